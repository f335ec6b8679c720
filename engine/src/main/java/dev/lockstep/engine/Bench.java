package dev.lockstep.engine;

import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.kv.KvCache;

import java.util.Arrays;
import java.util.SplittableRandom;

/**
 * llama-bench style throughput tests on one model: {@code pp N} prefills N tokens as one block from an
 * empty context; {@code tg N} decodes N tokens one at a time from an empty context (greedy, each output fed
 * back). Token ids are drawn from a seeded generator. Each test first runs unmeasured for at least
 * {@code warmups} runs and {@code warmupNanos} (the JIT needs a few thousand decode steps before the Vector
 * API kernels reach their final compiled form; one llama-bench-style warm-up run is far too short), then
 * {@code repetitions} times; results report median, min and max tokens per second.
 */
public final class Bench {
    /**
     * @param allocatedBytesPerToken heap bytes allocated by all threads during the measured runs, per token:
     *                               near zero when the kernels run as compiled vector code; a Vector API
     *                               fallback (intrinsics not applied) shows up here as kilobytes per token
     */
    public record Result(String test, int tokens, double[] tokensPerSecond, double allocatedBytesPerToken) {
        public double median() {
            double[] s = tokensPerSecond.clone();
            Arrays.sort(s);
            int n = s.length;
            return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
        }

        public double min() {
            return Arrays.stream(tokensPerSecond).min().orElse(0);
        }

        public double max() {
            return Arrays.stream(tokensPerSecond).max().orElse(0);
        }
    }

    private Bench() {
    }

    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();

    /** Heap bytes allocated so far by all live threads (-1 when the JVM cannot tell). */
    private static long allocatedBytes() {
        return THREADS.isThreadAllocatedMemorySupported() && THREADS.isThreadAllocatedMemoryEnabled()
                ? THREADS.getTotalThreadAllocatedBytes() : -1;
    }

    public static Result prefill(CausalLm model, int tokens, int repetitions, int warmups, long warmupNanos) {
        int[] ids = randomTokens(model.vocabSize(), tokens, 1);
        float[] logits = new float[model.vocabSize()];
        ForwardState state = model.newState(tokens);
        try (KvCache cache = model.newKvCache(tokens)) {
            return measure("pp" + tokens, tokens, repetitions, warmups, warmupNanos, () -> {
                cache.truncate(0);
                model.forward(ids, 0, tokens, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
            });
        }
    }

    public static Result decode(CausalLm model, int tokens, int repetitions, int warmups, long warmupNanos) {
        int vocab = model.vocabSize();
        float[] logits = new float[vocab];
        int[] one = new int[1];
        int first = randomTokens(vocab, 1, 2)[0];
        ForwardState state = model.newState(1);
        try (KvCache cache = model.newKvCache(tokens)) {
            return measure("tg" + tokens, tokens, repetitions, warmups, warmupNanos, () -> {
                cache.truncate(0);
                one[0] = first;
                for (int i = 0; i < tokens; i++) {
                    model.forward(one, 0, 1, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                    one[0] = Sampler.argmax(logits, 0, vocab);
                }
            });
        }
    }

    /** Warms {@code run} up, then times {@code repetitions} runs of {@code tokens} tokens each. */
    private static Result measure(String test, int tokens, int repetitions, int warmups, long warmupNanos, Runnable run) {
        long warmupStart = System.nanoTime();
        for (int warmed = 0; warmed < warmups || System.nanoTime() - warmupStart < warmupNanos; warmed++) {
            run.run();
        }
        double[] tps = new double[repetitions];
        long allocatedBefore = allocatedBytes();
        for (int r = 0; r < repetitions; r++) {
            long t0 = System.nanoTime();
            run.run();
            tps[r] = tokens * 1e9 / (System.nanoTime() - t0);
        }
        long allocatedAfter = allocatedBytes();
        double perToken = allocatedBefore < 0 || allocatedAfter < 0 ? Double.NaN
                : (double) (allocatedAfter - allocatedBefore) / ((long) tokens * repetitions);
        return new Result(test, tokens, tps, perToken);
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
