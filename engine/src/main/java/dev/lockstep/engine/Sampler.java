package dev.lockstep.engine;

import java.util.SplittableRandom;

/**
 * Picks tokens from logits per {@link SamplingParams}. The random stream is {@link SplittableRandom} with
 * the given seed (its algorithm is specified, so results repeat across JVMs); probabilities are computed in
 * double, candidates ordered by (logit desc, id asc), so ties never depend on sort stability.
 */
public final class Sampler {
    private final SamplingParams params;
    private final SplittableRandom random;
    private int[] order = new int[0];
    private double[] probs = new double[0];
    private long[] keys = new long[0];
    private long draws;

    public Sampler(SamplingParams params) {
        this.params = params;
        this.random = new SplittableRandom(params.seed());
    }

    public SamplingParams params() {
        return params;
    }

    /** A sampler at the same point of the same random stream (a forked session's): both then draw the same numbers. */
    public Sampler copy() {
        Sampler c = new Sampler(params);
        for (long i = 0; i < draws; i++) {
            c.random.nextDouble();
        }
        c.draws = draws;
        return c;
    }

    public int sample(float[] logits, int off, int vocab) {
        if (params.greedy()) {
            return argmax(logits, off, vocab);
        }
        if (order.length < vocab) {
            order = new int[vocab];
            probs = new double[vocab];
            keys = new long[vocab];
        }
        // candidates: top-k by logit (all when k == 0), in (logit desc, id asc) order. Keys pack
        // (order-reversed sortable float bits, id) into one long so a primitive sort gives exactly that order.
        int k = params.topK() == 0 ? vocab : Math.min(params.topK(), vocab);
        for (int i = 0; i < vocab; i++) {
            int bits = Float.floatToIntBits(logits[off + i]);
            int sortable = bits ^ ((bits >> 31) & 0x7fffffff);
            keys[i] = ((long) ~sortable << 32) | i;
        }
        java.util.Arrays.sort(keys, 0, vocab);
        for (int i = 0; i < k; i++) {
            order[i] = (int) keys[i];
        }
        double max = logits[off + order[0]] / (double) params.temperature();
        double sum = 0;
        for (int i = 0; i < k; i++) {
            probs[i] = Math.exp(logits[off + order[i]] / (double) params.temperature() - max);
            sum += probs[i];
        }
        // top-p: smallest prefix whose mass reaches p
        int n = k;
        if (params.topP() < 1f) {
            double cum = 0;
            for (int i = 0; i < k; i++) {
                cum += probs[i] / sum;
                if (cum >= params.topP()) {
                    n = i + 1;
                    break;
                }
            }
        }
        double mass = 0;
        for (int i = 0; i < n; i++) {
            mass += probs[i];
        }
        double u = random.nextDouble() * mass;
        draws++;
        double acc = 0;
        for (int i = 0; i < n; i++) {
            acc += probs[i];
            if (u < acc) {
                return order[i];
            }
        }
        return order[n - 1];
    }

    public static int argmax(float[] logits, int off, int vocab) {
        int best = 0;
        for (int i = 1; i < vocab; i++) {
            if (logits[off + i] > logits[off + best]) {
                best = i;
            }
        }
        return best;
    }
}
