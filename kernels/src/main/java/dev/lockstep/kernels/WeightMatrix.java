package dev.lockstep.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * A row-major {@code [rows, cols]} weight matrix in one storage format, over a (typically mmapped)
 * segment. Row {@code r} starts at byte {@code r * cols * format.bytesPerElement()}. Immutable; safe to
 * share between threads.
 */
public final class WeightMatrix {
    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final String name;
    private final WeightFormat format;
    private final int rows;
    private final int cols;
    private final MemorySegment data;

    public WeightMatrix(String name, WeightFormat format, int rows, int cols, MemorySegment data) {
        long expected = (long) rows * cols * format.bytesPerElement();
        if (rows <= 0 || cols <= 0 || data.byteSize() != expected) {
            throw new IllegalArgumentException(name + ": " + format + "[" + rows + ", " + cols + "] needs " + expected
                    + " bytes, segment has " + data.byteSize());
        }
        this.name = name;
        this.format = format;
        this.rows = rows;
        this.cols = cols;
        this.data = data;
    }

    public String name() {
        return name;
    }

    public WeightFormat format() {
        return format;
    }

    public int rows() {
        return rows;
    }

    public int cols() {
        return cols;
    }

    public MemorySegment data() {
        return data;
    }

    public long rowOffsetBytes(int row) {
        return (long) row * cols * format.bytesPerElement();
    }

    /** Element (row, col) as float. Slow; for references, tests and one-off reads. */
    public float get(int row, int col) {
        long off = rowOffsetBytes(row) + (long) col * format.bytesPerElement();
        return switch (format) {
            case F32 -> data.get(FLOAT_LE, off);
            case BF16 -> bf16ToFloat(data.get(SHORT_LE, off));
            case F16 -> Float.float16ToFloat(data.get(SHORT_LE, off));
        };
    }

    /** Decodes row {@code row} into {@code out[outOff .. outOff + cols)}. Used for embedding lookups. */
    public void rowToFloat(int row, float[] out, int outOff) {
        long base = rowOffsetBytes(row);
        switch (format) {
            case F32 -> MemorySegment.copy(data, FLOAT_LE, base, out, outOff, cols);
            case BF16 -> {
                for (int c = 0; c < cols; c++) {
                    out[outOff + c] = bf16ToFloat(data.get(SHORT_LE, base + 2L * c));
                }
            }
            case F16 -> {
                for (int c = 0; c < cols; c++) {
                    out[outOff + c] = Float.float16ToFloat(data.get(SHORT_LE, base + 2L * c));
                }
            }
        }
    }

    /** bf16 is the upper half of an IEEE binary32: widening is exact. */
    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat(bits << 16);
    }

    @Override
    public String toString() {
        return name + " " + format + "[" + rows + ", " + cols + "]";
    }
}
