package dev.lockstep.verify;

import dev.lockstep.interconnect.Affinity;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Pinning through the sched_setaffinity downcall: a pinned thread runs where it was put; a CPU that does not exist is refused. */
class AffinityTest {
    @Test
    void aPinnedThreadRunsOnItsCpu() throws Exception {
        int cpus = Runtime.getRuntime().availableProcessors();
        for (int cpu = 0; cpu < Math.min(cpus, 2); cpu++) {
            int target = cpu;
            int[] seen = new int[2];
            Affinity.Result[] result = new Affinity.Result[1];
            Thread t = Thread.ofPlatform().start(() -> {
                result[0] = Affinity.pinCurrentThread(target);
                for (int i = 0; i < 2; i++) {
                    Thread.yield();
                    seen[i] = Affinity.currentCpu();
                }
            });
            t.join();
            org.junit.jupiter.api.Assumptions.assumeTrue(result[0].pinned(), "pinning not permitted here: " + result[0].why());
            assertEquals(target, seen[0]);
            assertEquals(target, seen[1]);
        }
    }

    @Test
    void aCpuOutsideTheSetIsRefusedWithAReason() {
        Affinity.Result r = Affinity.pinCurrentThread(Affinity.MAX_CPUS - 1);
        assertFalse(r.pinned());
        assertTrue(r.why().contains("errno 22"), r.why());
        assertTrue(Affinity.unpinCurrentThread(Runtime.getRuntime().availableProcessors()).pinned());
        assertThrows(IllegalArgumentException.class, () -> Affinity.pinCurrentThread(-1));
    }

    /** A pinned thread sees one CPU through the JVM; workers must be spread over the count from before pinning. */
    @Test
    void theCpuCountForSpreadingWorkersSurvivesPinning() throws Exception {
        int before = Affinity.cpusAtStart();
        int[] seen = new int[2];
        Affinity.Result[] r = new Affinity.Result[1];
        Thread t = Thread.ofPlatform().start(() -> {
            r[0] = Affinity.pinCurrentThread(0);
            seen[0] = Runtime.getRuntime().availableProcessors();
            seen[1] = Affinity.cpusAtStart();
        });
        t.join();
        org.junit.jupiter.api.Assumptions.assumeTrue(r[0].pinned() && before > 1, "needs pinning and two CPUs");
        assertEquals(1, seen[0], "the JVM reports the pinned thread's mask");
        assertEquals(before, seen[1]);
    }
}
