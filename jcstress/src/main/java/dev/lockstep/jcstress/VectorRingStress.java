package dev.lockstep.jcstress;

import dev.lockstep.interconnect.VectorDescriptor;
import dev.lockstep.interconnect.VectorRing;
import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Description;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.IIIII_Result;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.openjdk.jcstress.annotations.Expect.ACCEPTABLE;
import static org.openjdk.jcstress.annotations.Expect.FORBIDDEN;

/**
 * The 320-byte-vector ring under the memory model: a batched claim/commit of two vectors that wraps around the
 * ring end is seen by the consumer all or nothing, in order, never torn (first and last word of each vector).
 */
public final class VectorRingStress {
    private VectorRingStress() {
    }

    @JCStressTest
    @Description("A two-vector batch across the wrap: the consumer sees none of it or all of it, in order, untorn.")
    @Outcome(id = "0, -1, -1, -1, -1", expect = ACCEPTABLE, desc = "not yet committed")
    @Outcome(id = "2, 10, 10, 11, 11", expect = ACCEPTABLE, desc = "the whole batch, in order, untorn")
    @Outcome(expect = FORBIDDEN, desc = "half a batch, a torn vector, or vectors out of order")
    @State
    public static class BatchAcrossTheWrap {
        static final int V = VectorDescriptor.VECTOR_BYTES;
        final VectorRing ring;

        public BatchAcrossTheWrap() {
            ring = new VectorRing(Arena.ofAuto(), 4);
            MemorySegment scratch = Arena.ofAuto().allocate(3L * V);
            ring.offer(scratch, 0, 3);
            ring.poll(scratch, 0, 3); // the next batch takes slots 3 and 0
        }

        @Actor
        public void producer() {
            long first = ring.tryClaim(2);
            MemorySegment s = ring.segment();
            for (int v = 0; v < 2; v++) {
                long off = ring.slotOffset(first + v);
                for (int w = 0; w < V / 8; w++) {
                    s.set(ValueLayout.JAVA_LONG, off + w * 8L, 10 + v);
                }
            }
            ring.commit();
        }

        @Actor
        public void consumer(IIIII_Result r) {
            int n = ring.available();
            r.r1 = n;
            if (n == 0) {
                r.r2 = r.r3 = r.r4 = r.r5 = -1;
                return;
            }
            MemorySegment s = ring.segment();
            long a = ring.slotOffset(ring.readIndex()), b = ring.slotOffset(ring.readIndex() + 1);
            r.r2 = (int) s.get(ValueLayout.JAVA_LONG, a);
            r.r3 = (int) s.get(ValueLayout.JAVA_LONG, a + V - 8);
            r.r4 = (int) s.get(ValueLayout.JAVA_LONG, b);
            r.r5 = (int) s.get(ValueLayout.JAVA_LONG, b + V - 8);
        }
    }
}
