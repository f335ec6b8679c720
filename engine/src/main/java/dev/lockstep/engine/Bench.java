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
 * back). Token ids are drawn from a seeded generator. Each test runs once unmeasured (JIT warm-up), then
 * {@code repetitions} times; results report median, min and max tokens per second.
 */
public final class Bench {
    public record Result(String test, int tokens, double[] tokensPerSecond) {
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

    public static Result prefill(CausalLm model, int tokens, int repetitions, int warmups) {
        int[] ids = randomTokens(model.vocabSize(), tokens, 1);
        float[] logits = new float[model.vocabSize()];
        ForwardState state = model.newState(tokens);
        double[] tps = new double[repetitions];
        try (KvCache cache = model.newKvCache(tokens)) {
            for (int r = -warmups; r < repetitions; r++) {
                cache.truncate(0);
                long t0 = System.nanoTime();
                model.forward(ids, 0, tokens, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                long dt = System.nanoTime() - t0;
                if (r >= 0) {
                    tps[r] = tokens * 1e9 / dt;
                }
            }
        }
        return new Result("pp" + tokens, tokens, tps);
    }

    public static Result decode(CausalLm model, int tokens, int repetitions, int warmups) {
        int vocab = model.vocabSize();
        float[] logits = new float[vocab];
        int[] one = new int[1];
        ForwardState state = model.newState(1);
        double[] tps = new double[repetitions];
        try (KvCache cache = model.newKvCache(tokens)) {
            for (int r = -warmups; r < repetitions; r++) {
                cache.truncate(0);
                one[0] = randomTokens(vocab, 1, 2)[0];
                long t0 = System.nanoTime();
                for (int i = 0; i < tokens; i++) {
                    model.forward(one, 0, 1, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                    one[0] = Sampler.argmax(logits, 0, vocab);
                }
                long dt = System.nanoTime() - t0;
                if (r >= 0) {
                    tps[r] = tokens * 1e9 / dt;
                }
            }
        }
        return new Result("tg" + tokens, tokens, tps);
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
