package dev.lockstep.interconnect;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The unit of data movement between workers: a fixed 320-byte vector, as the chip-to-chip links of the
 * rack-scale design carry. Activations travel as float32, so one vector holds 80 floats; a hidden state
 * of {@code h} floats travels as {@code ceil(h / 80)} vectors, the last zero-padded.
 *
 * <pre>
 *   0                                                               320
 *   +----------+----------+-- ... --+-----------+
 *   | f32 [0]  | f32 [1]  |         | f32 [79]  |     native byte order, no header:
 *   +----------+----------+-- ... --+-----------+     what a vector carries is fixed by the schedule
 * </pre>
 *
 * Rings, links and the schedule compiler (the interconnect issue) build on these constants.
 */
public final class VectorDescriptor {
    public static final int VERSION = 1;
    public static final int VECTOR_BYTES = 320;
    public static final int FLOATS_PER_VECTOR = VECTOR_BYTES / Float.BYTES;

    private VectorDescriptor() {
    }

    /** Vectors needed to carry {@code floats} float32 values. */
    public static int vectorsForFloats(int floats) {
        if (floats < 0) {
            throw new IllegalArgumentException("negative float count " + floats);
        }
        return (floats + FLOATS_PER_VECTOR - 1) / FLOATS_PER_VECTOR;
    }

    public static long vectorOffsetBytes(long base, int vectorIndex) {
        return base + (long) vectorIndex * VECTOR_BYTES;
    }

    /**
     * Packs {@code src[off .. off+n)} into consecutive vectors starting at {@code dst[dstOffsetBytes]},
     * zero-filling the rest of the last vector. Returns the vectors written.
     */
    public static int pack(float[] src, int off, int n, MemorySegment dst, long dstOffsetBytes) {
        int vectors = vectorsForFloats(n);
        checkCapacity(dst, dstOffsetBytes, vectors);
        MemorySegment.copy(src, off, dst, ValueLayout.JAVA_FLOAT, dstOffsetBytes, n);
        long usedBytes = (long) n * Float.BYTES;
        dst.asSlice(dstOffsetBytes + usedBytes, (long) vectors * VECTOR_BYTES - usedBytes).fill((byte) 0);
        return vectors;
    }

    /** Inverse of {@link #pack}: reads {@code n} floats from the vectors at {@code src[srcOffsetBytes]}. */
    public static void unpack(MemorySegment src, long srcOffsetBytes, float[] dst, int off, int n) {
        checkCapacity(src, srcOffsetBytes, vectorsForFloats(n));
        MemorySegment.copy(src, ValueLayout.JAVA_FLOAT, srcOffsetBytes, dst, off, n);
    }

    private static void checkCapacity(MemorySegment segment, long offsetBytes, int vectors) {
        long need = (long) vectors * VECTOR_BYTES;
        if (offsetBytes < 0 || offsetBytes + need > segment.byteSize()) {
            throw new IndexOutOfBoundsException(vectors + " vectors (" + need + " bytes) at offset " + offsetBytes
                    + " do not fit a " + segment.byteSize() + "-byte segment");
        }
    }
}
