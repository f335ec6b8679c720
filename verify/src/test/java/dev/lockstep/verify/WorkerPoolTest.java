package dev.lockstep.verify;

import dev.lockstep.kernels.WorkerPool;
import org.junit.jupiter.api.Test;

import java.time.Duration;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicIntegerArray;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

class WorkerPoolTest {
    @Test
    void everyItemRunsExactlyOnceUnderRandomDelays() {
        // Random stalls in the caller's chunk make workers park and wake late, and make the caller steal
        // chunks: the races that once let a stale worker re-run a chunk (and hang the next dispatch).
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> {
            for (int threads : new int[]{2, 3}) {
                try (WorkerPool pool = new WorkerPool(threads)) {
                    SplittableRandom random = new SplittableRandom(threads);
                    for (int round = 0; round < 20_000; round++) {
                        int n = 1 + random.nextInt(9);
                        long stallNs = random.nextInt(8) == 0 ? random.nextInt(300_000) : 0;
                        AtomicIntegerArray hits = new AtomicIntegerArray(n);
                        pool.forRange(n, (worker, start, end) -> {
                            for (int i = start; i < end; i++) {
                                hits.incrementAndGet(i);
                            }
                            if (start == 0 && stallNs > 0) {
                                long t0 = System.nanoTime();
                                while (System.nanoTime() - t0 < stallNs) {
                                    Thread.onSpinWait();
                                }
                            }
                        });
                        for (int i = 0; i < n; i++) {
                            assertEquals(1, hits.get(i), "round " + round + " item " + i + " of " + n);
                        }
                    }
                }
            }
        });
    }

    @Test
    void aFailureInAnyChunkReachesTheCaller() {
        try (WorkerPool pool = new WorkerPool(2)) {
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> pool.forRange(10, (worker, start, end) -> {
                if (start > 0) {
                    throw new IllegalStateException("chunk starting at " + start);
                }
            }));
            assertEquals("chunk starting at 5", e.getMessage());
            int[] sum = new int[1];
            pool.forRange(4, (worker, start, end) -> {
                synchronized (sum) {
                    sum[0] += end - start;
                }
            });
            assertEquals(4, sum[0], "the pool still works after a failure");
        }
    }
}
