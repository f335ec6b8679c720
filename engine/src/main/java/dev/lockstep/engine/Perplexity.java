package dev.lockstep.engine;

import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.kv.KvCache;

/**
 * Windowed perplexity. For {@code s = 0, W, 2W, ...} the model reads {@code tokens[s .. s+W)} from a fresh
 * context and scores its predictions of {@code tokens[s+1 .. s+W]} (the last window may be shorter), so
 * N tokens give N-1 scored tokens. NLL per token is {@code logsumexp(logits) - logits[target]}, in double.
 */
public final class Perplexity {
    /** Prefill block inside a window: bounds the logits buffer; results do not depend on it. */
    private static final int BLOCK_TOKENS = 256;

    public record Result(int tokens, int window, long scored, double nllSum, long nanos) {
        public double meanNll() {
            return nllSum / scored;
        }

        public double perplexity() {
            return Math.exp(meanNll());
        }
    }

    private Perplexity() {
    }

    public static Result compute(CausalLm model, int[] tokens, int window) {
        if (window < 1) {
            throw new IllegalArgumentException("window must be >= 1, got " + window);
        }
        if (tokens.length < 2) {
            throw new IllegalArgumentException("perplexity needs at least 2 tokens, got " + tokens.length);
        }
        int vocab = model.vocabSize();
        int block = Math.min(BLOCK_TOKENS, window);
        float[] logits = new float[block * vocab];
        ForwardState state = model.newState(block);
        double nllSum = 0;
        long scored = 0;
        long t0 = System.nanoTime();
        try (KvCache cache = model.newKvCache(Math.min(window, tokens.length))) {
            for (int s = 0; s < tokens.length - 1; s += window) {
                cache.truncate(0); // fresh context per window
                int end = Math.min(s + window, tokens.length);
                for (int b = s; b < end; b += block) {
                    int n = Math.min(block, end - b);
                    model.forward(tokens, b, n, cache, state, logits, LogitsMode.ALL, ForwardObserver.NONE);
                    for (int t = 0; t < n; t++) {
                        int target = b + t + 1;
                        if (target >= tokens.length) {
                            break;
                        }
                        nllSum += nll(logits, t * vocab, vocab, tokens[target]);
                        scored++;
                    }
                }
            }
        }
        return new Result(tokens.length, window, scored, nllSum, System.nanoTime() - t0);
    }

    static double nll(float[] logits, int off, int vocab, int target) {
        return logSumExp(logits, off, vocab) - logits[off + target];
    }

    /** {@code log(sum(exp(logits)))} over one row, in double, the maximum subtracted first (the log-softmax's normalizer). */
    static double logSumExp(float[] logits, int off, int vocab) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < vocab; i++) {
            max = Math.max(max, logits[off + i]);
        }
        double sum = 0;
        for (int i = 0; i < vocab; i++) {
            sum += Math.exp(logits[off + i] - max);
        }
        return max + Math.log(sum);
    }
}
