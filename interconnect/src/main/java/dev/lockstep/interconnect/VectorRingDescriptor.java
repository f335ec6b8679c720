package dev.lockstep.interconnect;

/**
 * Layout of a {@link VectorRing}: a single-producer/single-consumer ring of 320-byte vector slots in one
 * off-heap segment, modelled on Agrona's {@code RingBufferDescriptor}. The producer's and the consumer's
 * positions sit on cache lines of their own (two lines each, against the adjacent-line prefetcher), so the two
 * threads never write the same line; each also keeps a private cached copy of the other's position.
 *
 * <pre>
 *   0          128        256         384        512
 *   +----------+----------+-----------+----------+----------------------------------------------+
 *   | tail     | (pad)    | head      | (pad)    | slot 0 | slot 1 | ... | slot capacity-1       |
 *   | long     |          | long      |          | 320 B each, native order, no per-slot header |
 *   +----------+----------+-----------+----------+----------------------------------------------+
 *   tail = vectors committed by the producer (release store), head = vectors released by the consumer;
 *   both only grow; vector i lives in slot (i & (capacity - 1)).
 * </pre>
 */
public final class VectorRingDescriptor {
    public static final int VERSION = 1;
    /** Bytes between the two positions: two 64-byte lines each. */
    public static final int POSITION_PADDING_BYTES = 128;
    public static final int TAIL_OFFSET = 0;
    public static final int HEAD_OFFSET = TAIL_OFFSET + POSITION_PADDING_BYTES;
    public static final int HEADER_BYTES = HEAD_OFFSET + POSITION_PADDING_BYTES;
    /** Alignment of the segment: slots start on a cache line. */
    public static final int ALIGNMENT_BYTES = 128;

    private VectorRingDescriptor() {
    }

    /** Segment bytes of a ring of {@code capacity} vectors. */
    public static long segmentBytes(int capacity) {
        checkCapacity(capacity);
        return HEADER_BYTES + (long) capacity * VectorDescriptor.VECTOR_BYTES;
    }

    /** Offset of the slot holding vector {@code index}. */
    public static long slotOffset(long index, int capacity) {
        return HEADER_BYTES + (index & (capacity - 1)) * (long) VectorDescriptor.VECTOR_BYTES;
    }

    /** A capacity is a power of two of at least 2 vectors. */
    public static void checkCapacity(int capacity) {
        if (capacity < 2 || Integer.bitCount(capacity) != 1) {
            throw new IllegalArgumentException("ring capacity must be a power of two >= 2 vectors, got " + capacity);
        }
    }

    /** A segment of {@code bytes} holds a ring of {@code capacity} vectors at an aligned address. */
    public static void checkSegment(long address, long bytes, int capacity) {
        if (bytes != segmentBytes(capacity)) {
            throw new IllegalArgumentException("a ring of " + capacity + " vectors needs " + segmentBytes(capacity)
                    + " bytes, the segment has " + bytes);
        }
        if (address % ALIGNMENT_BYTES != 0) {
            throw new IllegalArgumentException("ring segment at 0x" + Long.toHexString(address) + " is not "
                    + ALIGNMENT_BYTES + "-byte aligned");
        }
    }
}
