package dev.lockstep.engine;

import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.kv.KvCache;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/**
 * llama-bench style throughput tests on one model: {@code pp N} prefills N tokens as one block; {@code tg N}
 * decodes N tokens one at a time (greedy, each output fed back); both after {@code depth} tokens already in the
 * context (llama-bench's {@code -d}: prefilled once, unmeasured, and kept while each run truncates back to it). Token ids are drawn from a seeded generator. The tests first run unmeasured for at least
 * {@code warmups} runs each and {@code warmupNanos} (the JIT needs a few thousand decode steps before the
 * Vector API kernels reach their final compiled form; one llama-bench-style warm-up run is far too short),
 * then {@code repetitions} times each; results report median, min and max tokens per second.
 */
public final class Bench {
    /**
     * @param allocatedBytesPerToken heap bytes allocated by all threads during the measured runs, per token:
     *                               near zero when the kernels run as compiled vector code; a Vector API
     *                               fallback (intrinsics not applied) shows up here as kilobytes per token
     * @param stepNanos              for tg: the time of every measured decode step (a timer around each forward), else null
     */
    public record Result(String test, int tokens, double[] tokensPerSecond, double allocatedBytesPerToken,
                         org.HdrHistogram.Histogram stepNanos) {
        public double median() {
            return Bench.median(tokensPerSecond);
        }

        public double min() {
            return Arrays.stream(tokensPerSecond).min().orElse(0);
        }

        public double max() {
            return Arrays.stream(tokensPerSecond).max().orElse(0);
        }

        /** The runs' spread: slowest and fastest run over the median. */
        public String spread() {
            double m = median();
            return String.format(java.util.Locale.ROOT, "min/median %.2f, max/median %.2f", min() / m, max() / m);
        }
    }

    private Bench() {
    }

    /** The median of {@code values} (the mean of the middle two for an even count); {@code values} is not changed. */
    public static double median(double[] values) {
        double[] s = values.clone();
        Arrays.sort(s);
        int n = s.length;
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    }

    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();

    /** Heap bytes allocated so far by all live threads (-1 when the JVM cannot tell). */
    private static long allocatedBytes() {
        return THREADS.isThreadAllocatedMemorySupported() && THREADS.isThreadAllocatedMemoryEnabled()
                ? THREADS.getTotalThreadAllocatedBytes() : -1;
    }

    /** One benchmark: {@code tokens} tokens per run of {@code body}; {@code steps}, if any, receives step times while measuring. */
    private record Test(String name, int tokens, Runnable body, StepTimes steps) {
    }

    /** Where a decode loop records each step's time while a measurement is on (allocation-free). */
    private static final class StepTimes {
        org.HdrHistogram.Histogram histogram;
    }

    /**
     * Runs {@code pp prefillTokens} and {@code tg decodeTokens} (either may be 0 to skip). The warm-up
     * alternates between the tests until each has run {@code warmups} times and {@code warmupNanos} have
     * passed, so every kernel path either test takes is compiled before anything is measured (a prefill-only
     * process would otherwise time the single-token matvec, which its last-token lm_head uses, interpreted).
     */
    public static List<Result> run(CausalLm model, int prefillTokens, int decodeTokens, int depth, int repetitions, int warmups,
                                   long warmupNanos) {
        return run(model, prefillTokens, decodeTokens, depth, repetitions, warmups, warmupNanos, () -> { });
    }

    /** As {@link #run(CausalLm, int, int, int, int, int, long)}, calling {@code afterWarmup} between the warm-up and the first measured run. */
    public static List<Result> run(CausalLm model, int prefillTokens, int decodeTokens, int depth, int repetitions, int warmups,
                                   long warmupNanos, Runnable afterWarmup) {
        int vocab = model.vocabSize();
        float[] logits = new float[vocab];
        List<Test> tests = new ArrayList<>();
        String at = depth > 0 ? " @ d" + depth : "";
        try (KvCache prefillCache = model.newKvCache(Math.max(1, depth + prefillTokens));
             KvCache decodeCache = model.newKvCache(Math.max(1, depth + decodeTokens))) {
            if (depth > 0) {
                int[] context = randomTokens(vocab, depth, 3);
                ForwardState state = model.newState(Math.min(depth, 512));
                for (KvCache cache : new KvCache[]{prefillCache, decodeCache}) {
                    for (int s = 0; s < depth; s += 512) {
                        model.forward(context, s, Math.min(512, depth - s), cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                    }
                }
            }
            if (prefillTokens > 0) {
                int[] ids = randomTokens(vocab, prefillTokens, 1);
                ForwardState state = model.newState(prefillTokens);
                tests.add(new Test("pp" + prefillTokens + at, prefillTokens, () -> {
                    prefillCache.truncate(depth);
                    model.forward(ids, 0, prefillTokens, prefillCache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                }, null));
            }
            if (decodeTokens > 0) {
                int[] one = new int[1];
                int first = randomTokens(vocab, 1, 2)[0];
                ForwardState state = model.newState(1);
                StepTimes times = new StepTimes();
                tests.add(new Test("tg" + decodeTokens + at, decodeTokens, () -> {
                    decodeCache.truncate(depth);
                    one[0] = first;
                    org.HdrHistogram.Histogram h = times.histogram;
                    for (int i = 0; i < decodeTokens; i++) {
                        long t0 = System.nanoTime();
                        model.forward(one, 0, 1, decodeCache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                        one[0] = Sampler.argmax(logits, 0, vocab);
                        if (h != null) {
                            h.recordValue(Math.min(System.nanoTime() - t0, h.getHighestTrackableValue()));
                        }
                    }
                }, times));
            }
            long warmupStart = System.nanoTime();
            for (int warmed = 0; warmed < warmups || System.nanoTime() - warmupStart < warmupNanos; warmed++) {
                tests.forEach(t -> t.body().run());
            }
            afterWarmup.run();
            List<Result> results = new ArrayList<>();
            for (Test t : tests) {
                results.add(measure(t, repetitions));
            }
            return results;
        }
    }

    /** Times {@code repetitions} runs of an already warmed-up test. */
    private static Result measure(Test test, int repetitions) {
        double[] tps = new double[repetitions];
        org.HdrHistogram.Histogram steps = test.steps() == null ? null : new org.HdrHistogram.Histogram(60_000_000_000L, 3);
        if (steps != null) {
            test.steps().histogram = steps;
        }
        long allocatedBefore = allocatedBytes();
        for (int r = 0; r < repetitions; r++) {
            long t0 = System.nanoTime();
            test.body().run();
            tps[r] = test.tokens() * 1e9 / (System.nanoTime() - t0);
        }
        long allocatedAfter = allocatedBytes();
        if (steps != null) {
            test.steps().histogram = null;
        }
        double perToken = allocatedBefore < 0 || allocatedAfter < 0 ? Double.NaN
                : (double) (allocatedAfter - allocatedBefore) / ((long) test.tokens() * repetitions);
        return new Result(test.name(), test.tokens(), tps, perToken, steps);
    }

    static int[] randomTokens(int vocab, int n, long seed) {
        SplittableRandom random = new SplittableRandom(seed);
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) {
            ids[i] = random.nextInt(vocab);
        }
        return ids;
    }
}
