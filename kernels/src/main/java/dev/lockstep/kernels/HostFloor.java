package dev.lockstep.kernels;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntConsumer;

/**
 * The host's own latency floor for a step of fixed work: {@code threads} threads each run the same amount of
 * pure compute (a dependent chain of multiply-adds on registers: no memory traffic), then meet at a spin
 * barrier; the step time is recorded on thread 0. Nothing varies between steps but the host (time slices,
 * hypervisor pauses, frequency), so the spread of these times is what any barrier-synchronized step of that
 * length can expect here: the floor under an engine's own tail.
 */
public final class HostFloor {
    private HostFloor() {
    }

    private static double sink;

    /**
     * Multiply-add iterations of the work loop per nanosecond on the calling thread: the fastest of five 2M-iteration
     * runs after the loop is compiled (about 0.1 s in all).
     */
    public static double iterationsPerNano() {
        for (int i = 0; i < 20; i++) {
            work(2_000_000); // to C2
        }
        long best = Long.MAX_VALUE;
        for (int i = 0; i < 5; i++) {
            long t0 = System.nanoTime();
            work(2_000_000);
            best = Math.min(best, System.nanoTime() - t0);
        }
        return 2_000_000.0 / Math.max(1, best);
    }

    private static void work(long iterations) {
        double a = 1.0000001, b = 0.9999999;
        for (long i = 0; i < iterations; i++) {
            a = a * b + 1e-9;
        }
        sink += a;
    }

    /**
     * Runs {@code steps} steps in which each of {@code threads} threads computes for about {@code stepNanos} (so a
     * step lasts about that long; {@code onStart} runs first on each thread, e.g. to pin it) and returns each
     * step's wall time in nanoseconds.
     */
    public static long[] measure(int threads, long stepNanos, int steps, IntConsumer onStart) {
        if (threads < 1 || steps < 1 || stepNanos < 1) {
            throw new IllegalArgumentException("threads, steps and stepNanos must be positive");
        }
        if (onStart != null) {
            onStart.accept(0);
        }
        long iterations = (long) (iterationsPerNano() * stepNanos);
        long[] times = new long[steps];
        AtomicInteger started = new AtomicInteger(), finished = new AtomicInteger();
        Thread[] helpers = new Thread[threads - 1];
        for (int h = 0; h < helpers.length; h++) {
            int worker = h + 1;
            helpers[h] = Thread.ofPlatform().daemon().name("host-floor-" + worker).start(() -> {
                if (onStart != null) {
                    onStart.accept(worker);
                }
                for (int s = 1; s <= steps; s++) {
                    while (started.get() < s) {
                        Thread.onSpinWait();
                    }
                    work(iterations);
                    finished.incrementAndGet();
                }
            });
        }
        for (int s = 1; s <= steps; s++) {
            long t0 = System.nanoTime();
            started.set(s);
            work(iterations);
            long target = (long) s * (threads - 1);
            while (finished.get() < target) {
                Thread.onSpinWait();
            }
            times[s - 1] = System.nanoTime() - t0;
        }
        for (Thread t : helpers) {
            try {
                t.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        return times;
    }
}
