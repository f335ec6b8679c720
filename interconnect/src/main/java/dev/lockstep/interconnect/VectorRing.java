package dev.lockstep.interconnect;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;

/**
 * A link in shared memory ({@link Link}): a single-producer/single-consumer ring of 320-byte vectors ({@link VectorRingDescriptor} lays it out).
 * Lock-free and allocation-free. The producer claims {@code n} slots ({@link #tryClaim}), writes the payload
 * into them ({@link #slotOffset}), then publishes them with one release store ({@link #commit}); the consumer
 * sees them with an acquire load ({@link #available}), reads, and gives the slots back ({@link #release}). A full
 * ring is the sentinel {@link #INSUFFICIENT_CAPACITY}, never a wait: what to do then is the caller's (the
 * schedule fixes ring sizes so that it cannot happen).
 *
 * <p>Exactly one producer thread and one consumer thread; each keeps a cached copy of the other's position and
 * reads the shared one only when the cache says the ring is full (producer) or empty (consumer).
 */
public final class VectorRing implements Link {

    private static final VarHandle POSITION = ValueLayout.JAVA_LONG.varHandle();

    private final MemorySegment segment;
    private final int capacity;
    // producer-side state (one thread)
    private long claimed;     // next vector index to hand out
    private long headCache;   // last head the producer read
    // consumer-side state (one thread)
    private long tailCache;   // last tail the consumer read
    private long consumed;    // next vector index to read (== head after release)

    /** A ring of {@code capacity} vectors in a segment of its own from {@code arena}. */
    public VectorRing(Arena arena, int capacity) {
        this(arena.allocate(VectorRingDescriptor.segmentBytes(capacity), VectorRingDescriptor.ALIGNMENT_BYTES), capacity);
    }

    /** A ring over {@code segment} (zeroed, {@link VectorRingDescriptor#segmentBytes} long, aligned). */
    public VectorRing(MemorySegment segment, int capacity) {
        VectorRingDescriptor.checkCapacity(capacity);
        VectorRingDescriptor.checkSegment(segment.address(), segment.byteSize(), capacity);
        this.segment = segment;
        this.capacity = capacity;
        long tail = (long) POSITION.getAcquire(segment, (long) VectorRingDescriptor.TAIL_OFFSET);
        long head = (long) POSITION.getAcquire(segment, (long) VectorRingDescriptor.HEAD_OFFSET);
        this.claimed = tail;
        this.headCache = head;
        this.tailCache = tail;
        this.consumed = head;
    }

    public int capacity() {
        return capacity;
    }

    @Override
    public LinkParameters parameters() {
        return LinkParameters.ring(capacity);
    }

    @Override
    public MemorySegment segment() {
        return segment;
    }

    /** Offset in {@link #segment()} of the slot of vector {@code index}. */
    @Override
    public long slotOffset(long index) {
        return VectorRingDescriptor.slotOffset(index, capacity);
    }

    // ---- producer ----

    /**
     * Claims {@code n} consecutive vectors; returns the index of the first (write vector {@code i} at
     * {@code slotOffset(first + i)}), or {@link #INSUFFICIENT_CAPACITY} when fewer than {@code n} slots are free.
     * Claims must be committed in order before the next claim.
     */
    @Override
    public long tryClaim(int n) {
        if (n <= 0 || n > capacity) {
            throw new IllegalArgumentException("claim of " + n + " vectors on a ring of " + capacity);
        }
        long end = claimed + n;
        if (end - headCache > capacity) {
            headCache = (long) POSITION.getAcquire(segment, (long) VectorRingDescriptor.HEAD_OFFSET);
            if (end - headCache > capacity) {
                return INSUFFICIENT_CAPACITY;
            }
        }
        long first = claimed;
        claimed = end;
        return first;
    }

    /** Publishes every claimed vector (one release store: their payload is visible before the new tail). */
    @Override
    public void commit() {
        POSITION.setRelease(segment, (long) VectorRingDescriptor.TAIL_OFFSET, claimed);
    }

    /** Claims, copies {@code n} vectors from {@code src} at {@code srcOffset}, commits. False when the ring is full. */
    public boolean offer(MemorySegment src, long srcOffset, int n) {
        long first = tryClaim(n);
        if (first == INSUFFICIENT_CAPACITY) {
            return false;
        }
        copyIn(src, srcOffset, first, n);
        commit();
        return true;
    }

    private void copyIn(MemorySegment src, long srcOffset, long first, int n) {
        int slot = (int) (first & (capacity - 1));
        int untilWrap = Math.min(n, capacity - slot);
        MemorySegment.copy(src, srcOffset, segment, slotOffset(first), (long) untilWrap * VectorDescriptor.VECTOR_BYTES);
        if (untilWrap < n) {
            MemorySegment.copy(src, srcOffset + (long) untilWrap * VectorDescriptor.VECTOR_BYTES, segment,
                    VectorRingDescriptor.HEADER_BYTES, (long) (n - untilWrap) * VectorDescriptor.VECTOR_BYTES);
        }
    }

    // ---- consumer ----

    /** Vectors committed and not yet released, from index {@link #readIndex()} on (acquire: their payload is visible). */
    @Override
    public int available() {
        long avail = tailCache - consumed;
        if (avail == 0) {
            tailCache = (long) POSITION.getAcquire(segment, (long) VectorRingDescriptor.TAIL_OFFSET);
            avail = tailCache - consumed;
        }
        return (int) avail;
    }

    /** Index of the next vector to read: at {@code slotOffset(readIndex() + i)}. */
    @Override
    public long readIndex() {
        return consumed;
    }

    /** Gives {@code n} read vectors' slots back to the producer (one release store). */
    @Override
    public void release(int n) {
        if (n < 0 || consumed + n > tailCache) {
            throw new IllegalArgumentException("release of " + n + " vectors, " + (tailCache - consumed) + " read");
        }
        consumed += n;
        POSITION.setRelease(segment, (long) VectorRingDescriptor.HEAD_OFFSET, consumed);
    }

    /** Copies up to {@code max} available vectors to {@code dst} at {@code dstOffset} and releases them; returns how many. */
    public int poll(MemorySegment dst, long dstOffset, int max) {
        int n = Math.min(available(), max);
        if (n == 0) {
            return 0;
        }
        int slot = (int) (consumed & (capacity - 1));
        int untilWrap = Math.min(n, capacity - slot);
        MemorySegment.copy(segment, slotOffset(consumed), dst, dstOffset, (long) untilWrap * VectorDescriptor.VECTOR_BYTES);
        if (untilWrap < n) {
            MemorySegment.copy(segment, VectorRingDescriptor.HEADER_BYTES, dst, dstOffset + (long) untilWrap * VectorDescriptor.VECTOR_BYTES,
                    (long) (n - untilWrap) * VectorDescriptor.VECTOR_BYTES);
        }
        release(n);
        return n;
    }
}
