package dev.lockstep.interconnect;

import java.lang.foreign.MemorySegment;

/**
 * One direction between two workers, as the schedule executor uses it: a single producer claims consecutive vector
 * slots ({@link #tryClaim}), writes 320-byte vectors into them in place ({@link #segment()} at {@link #slotOffset}),
 * and publishes them ({@link #commit}); a single consumer sees committed vectors in order ({@link #available}), reads
 * them in place from {@link #readIndex()} on, and gives the slots back ({@link #release}). Slot {@code i} is at
 * {@code slotOffset(i)}; slots wrap modulo the capacity (a message may straddle the wrap: at most two runs).
 *
 * <p>{@link VectorRing} is the shared-memory implementation. A transport between processes or machines implements
 * the same contract over its own buffers (the producer's claim is its send buffer, the consumer's view its receive
 * buffer), with its own {@link LinkParameters}; the executor, the compiler and the verifier do not change.
 */
public interface Link {
    /** {@link #tryClaim} result when fewer than the requested slots are free. */
    long INSUFFICIENT_CAPACITY = -1;

    LinkParameters parameters();

    MemorySegment segment();

    /** Offset in {@link #segment()} of the slot of vector {@code index}. */
    long slotOffset(long index);

    /** Claims {@code n} consecutive slots; the first's index, or {@link #INSUFFICIENT_CAPACITY}. Never waits. */
    long tryClaim(int n);

    /** Publishes every claimed slot (their payload visible before the new tail). */
    void commit();

    /** Committed vectors not yet released, from {@link #readIndex()} on (their payload visible). */
    int available();

    /** Index of the next vector to read. */
    long readIndex();

    /** Gives {@code n} read vectors' slots back to the producer. */
    void release(int n);
}
