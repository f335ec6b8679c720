package dev.lockstep.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.concurrent.CyclicBarrier;

/**
 * The machine's memory read bandwidth as a decode step sees it: {@code threads} threads each stream their own
 * part of a buffer far larger than the caches (vector loads summed into a few accumulators, nothing written),
 * started together; the figure is total bytes over the slowest thread's time, the median of several passes.
 * This is the denominator of the decode roofline ({@code bench}): a decode token must read its weights once.
 * (A decode can exceed it slightly: tokens that route to the experts of the previous token find some of their
 * weights still in the last-level cache.)
 */
public final class ReadBandwidth {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    private ReadBandwidth() {
    }

    /** Median read bandwidth in bytes per second over {@code passes} passes of {@code bufferBytes} with {@code threads} threads. */
    public static double measure(int threads, long bufferBytes, int passes) {
        long perThread = bufferBytes / threads / (4L * F.length() * 4) * (4L * F.length() * 4);
        try (Arena arena = Arena.ofShared()) {
            MemorySegment buffer = arena.allocate(perThread * threads, 64);
            buffer.fill((byte) 1);
            double[] rates = new double[passes];
            float[] sink = new float[threads];
            for (int p = -2; p < passes; p++) { // two unmeasured passes: the JIT compiles the loop
                CyclicBarrier start = new CyclicBarrier(threads);
                long[] nanos = new long[threads];
                Thread[] workers = new Thread[threads];
                for (int t = 0; t < threads; t++) {
                    int id = t;
                    workers[t] = Thread.ofPlatform().start(() -> {
                        try {
                            start.await();
                        } catch (Exception e) {
                            throw new IllegalStateException(e);
                        }
                        long t0 = System.nanoTime();
                        sink[id] += sum(buffer, id * perThread, perThread);
                        nanos[id] = System.nanoTime() - t0;
                    });
                }
                for (Thread w : workers) {
                    try {
                        w.join();
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new IllegalStateException(e);
                    }
                }
                if (p >= 0) {
                    rates[p] = (double) perThread * threads / (Arrays.stream(nanos).max().orElse(1) / 1e9);
                }
            }
            Arrays.sort(rates);
            if (Float.isNaN(sink[0])) {
                throw new IllegalStateException(); // keeps the sums alive
            }
            return rates[passes / 2];
        }
    }

    /** Sum of a region as floats, four independent vector accumulators (the loads are what is measured). */
    private static float sum(MemorySegment s, long offset, long bytes) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        long step = 4L * F.length();
        for (long o = offset; o < offset + bytes; o += 4 * step) {
            a0 = a0.add(FloatVector.fromMemorySegment(F, s, o, ByteOrder.LITTLE_ENDIAN));
            a1 = a1.add(FloatVector.fromMemorySegment(F, s, o + step, ByteOrder.LITTLE_ENDIAN));
            a2 = a2.add(FloatVector.fromMemorySegment(F, s, o + 2 * step, ByteOrder.LITTLE_ENDIAN));
            a3 = a3.add(FloatVector.fromMemorySegment(F, s, o + 3 * step, ByteOrder.LITTLE_ENDIAN));
        }
        return a0.add(a1).add(a2).add(a3).reduceLanes(jdk.incubator.vector.VectorOperators.ADD);
    }
}
