package dev.lockstep.verify;

import dev.lockstep.kernels.WorkerPool;

import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicIntegerArray;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Randomized WorkerPool dispatches: random item counts, and now and then a stall in the caller's chunk,
 * which makes workers park and wake late and makes the caller steal chunks — the races that once let a
 * stale worker run a chunk twice (and hang the next dispatch). Asserts every item runs exactly once.
 */
final class PoolStress {
    private PoolStress() {
    }

    static void run(WorkerPool pool, int rounds, long seed, int stallOneIn, int maxStallNs) {
        SplittableRandom random = new SplittableRandom(seed);
        for (int round = 0; round < rounds; round++) {
            int n = 1 + random.nextInt(9);
            long stallNs = random.nextInt(stallOneIn) == 0 ? random.nextInt(maxStallNs) : 0;
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
