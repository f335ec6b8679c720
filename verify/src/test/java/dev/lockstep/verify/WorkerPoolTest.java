package dev.lockstep.verify;

import dev.lockstep.kernels.WorkerPool;
import org.junit.jupiter.api.Test;

import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

class WorkerPoolTest {
    @Test
    void everyItemRunsExactlyOnceUnderRandomDelays() {
        assertTimeoutPreemptively(Duration.ofSeconds(60), () -> {
            for (int threads : new int[]{2, 3}) {
                try (WorkerPool pool = new WorkerPool(threads)) {
                    PoolStress.run(pool, 20_000, threads, 8, 300_000);
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
