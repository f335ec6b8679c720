package dev.lockstep.verify;

import dev.lockstep.interconnect.VectorDescriptor;
import dev.lockstep.interconnect.VectorRing;
import dev.lockstep.interconnect.VectorRingDescriptor;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The 320-byte-vector SPSC ring: layout, full ring sentinel, wrap-around, and two threads streaming millions of vectors. */
class VectorRingTest {
    static final int V = VectorDescriptor.VECTOR_BYTES;

    static void fill(MemorySegment s, long off, int n, long firstSeq) {
        for (int v = 0; v < n; v++) {
            for (int f = 0; f < VectorDescriptor.FLOATS_PER_VECTOR; f += 2) {
                s.set(ValueLayout.JAVA_LONG_UNALIGNED, off + (long) v * V + f * 4L, firstSeq + v);
            }
        }
    }

    /** The sequence number a vector carries, or throws when its 40 longs disagree (a torn vector). */
    static long seqOf(MemorySegment s, long off) {
        long seq = s.get(ValueLayout.JAVA_LONG_UNALIGNED, off);
        for (int f = 2; f < VectorDescriptor.FLOATS_PER_VECTOR; f += 2) {
            long x = s.get(ValueLayout.JAVA_LONG_UNALIGNED, off + f * 4L);
            if (x != seq) {
                throw new AssertionError("torn vector: long 0 is " + seq + ", long " + f / 2 + " is " + x);
            }
        }
        return seq;
    }

    @Test
    void layoutAndValidation() {
        assertEquals(256 + 8 * 320, VectorRingDescriptor.segmentBytes(8));
        assertEquals(256 + 3 * 320, VectorRingDescriptor.slotOffset(11, 8));
        assertThrows(IllegalArgumentException.class, () -> VectorRingDescriptor.checkCapacity(6));
        assertThrows(IllegalArgumentException.class, () -> VectorRingDescriptor.checkCapacity(1));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment wrongSize = arena.allocate(VectorRingDescriptor.segmentBytes(8) + 64, 128);
            assertThrows(IllegalArgumentException.class, () -> new VectorRing(wrongSize, 8));
        }
    }

    @Test
    void fullRingIsASentinelAndBatchesWrapAround() {
        try (Arena arena = Arena.ofConfined()) {
            VectorRing ring = new VectorRing(arena, 8);
            MemorySegment buf = arena.allocate(8L * V);
            fill(buf, 0, 5, 0);
            assertTrue(ring.offer(buf, 0, 5));
            fill(buf, 0, 4, 5);
            assertFalse(ring.offer(buf, 0, 4), "5 + 4 > 8: refused, nothing written");
            assertEquals(VectorRing.INSUFFICIENT_CAPACITY, ring.tryClaim(4));
            MemorySegment out = arena.allocate(8L * V);
            assertEquals(5, ring.poll(out, 0, 8));
            for (int v = 0; v < 5; v++) {
                assertEquals(v, seqOf(out, (long) v * V));
            }
            fill(buf, 0, 7, 5);
            assertTrue(ring.offer(buf, 0, 7), "slots 5..7 then 0..3: a batch across the wrap");
            assertEquals(7, ring.available());
            assertEquals(3, ring.poll(out, 0, 3));
            assertEquals(4, ring.poll(out, 3L * V, 8));
            for (int v = 0; v < 7; v++) {
                assertEquals(5 + v, seqOf(out, (long) v * V));
            }
            assertEquals(0, ring.poll(out, 0, 8));
            assertThrows(IllegalArgumentException.class, () -> ring.release(1));
            assertThrows(IllegalArgumentException.class, () -> ring.tryClaim(9));
        }
    }

    @Test
    void twoThreadsStreamVectorsWithoutLossDuplicationReorderOrTearing() throws Exception {
        long total = Long.getLong("lockstep.ringVectors", 2_000_000);
        try (Arena arena = Arena.ofShared()) {
            VectorRing ring = new VectorRing(arena, 64);
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread producer = Thread.ofPlatform().start(() -> {
                try (Arena local = Arena.ofConfined()) {
                    MemorySegment buf = local.allocate(7L * V);
                    long seq = 0;
                    int batch = 1;
                    while (seq < total) {
                        int n = (int) Math.min(batch, total - seq);
                        long first = ring.tryClaim(n);
                        if (first == VectorRing.INSUFFICIENT_CAPACITY) {
                            Thread.onSpinWait();
                            continue;
                        }
                        for (int v = 0; v < n; v++) { // write straight into the slots
                            fill(ring.segment(), ring.slotOffset(first + v), 1, seq + v);
                        }
                        ring.commit();
                        seq += n;
                        batch = batch % 7 + 1;
                    }
                } catch (Throwable t) {
                    failure.compareAndSet(null, t);
                }
            });
            long expected = 0;
            long deadline = System.nanoTime() + 120_000_000_000L;
            while (expected < total && failure.get() == null) {
                int n = ring.available();
                if (n == 0) {
                    Thread.onSpinWait();
                    assertTrue(System.nanoTime() < deadline, "stalled at " + expected);
                    continue;
                }
                for (int v = 0; v < n; v++) {
                    long seq = seqOf(ring.segment(), ring.slotOffset(ring.readIndex() + v));
                    assertEquals(expected, seq, "vector out of order, lost or duplicated");
                    expected++;
                }
                ring.release(n);
            }
            producer.join();
            assertNull(failure.get());
            assertEquals(total, expected);
        }
    }
}
