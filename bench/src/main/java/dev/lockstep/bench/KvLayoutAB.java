package dev.lockstep.bench;

import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.kv.KvCache;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;

/**
 * Paged KV against the contiguous cache it replaced, in one JVM, alternating: both caches hold the same
 * {@code depth} positions; each round times {@code steps} decode steps on one, then on the other (order
 * swapped every round), each step rolled back so every step attends over {@code depth} positions. Prints the
 * median step time of each and their ratio. On a noisy machine only the ratio of medians of one run means
 * anything.
 *
 * <pre>java -cp bench/target/benchmarks.jar dev.lockstep.bench.KvLayoutAB [model] [depth] [threads] [rounds] [steps]</pre>
 */
public final class KvLayoutAB {
    private KvLayoutAB() {
    }

    public static void main(String[] args) {
        Path model = Path.of(args.length > 0 ? args[0] : "models/kjv-qwen3moe");
        int depth = args.length > 1 ? Integer.parseInt(args[1]) : 1792;
        int threads = args.length > 2 ? Integer.parseInt(args[2]) : 1;
        int rounds = args.length > 3 ? Integer.parseInt(args[3]) : 40;
        int steps = args.length > 4 ? Integer.parseInt(args[4]) : 50;
        try (WorkerPool pool = new WorkerPool(threads); CausalLm m = ModelFamilies.load(model, pool)) {
            var config = ((dev.lockstep.moe.decoder.DecoderModel) m).spec();
            KvCache paged = m.newKvCache(depth + 1);
            KvCache contiguous = new ContiguousKvCache(config.nLayers(), config.kv().layer(0).keyHeads(), config.kv().layer(0).keyDim(), depth + 1);
            ForwardState state = m.newState(256);
            float[] logits = new float[m.vocabSize()];
            int[] prompt = new int[depth];
            for (int i = 0; i < depth; i++) {
                prompt[i] = (i * 37) % m.vocabSize();
            }
            for (KvCache c : new KvCache[]{paged, contiguous}) {
                for (int s = 0; s < depth; s += 256) {
                    m.forward(prompt, s, Math.min(256, depth - s), c, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                }
            }
            int[] token = {259};
            double[] tPaged = new double[rounds], tContiguous = new double[rounds];
            for (int w = 0; w < 10; w++) { // warm-up: both paths compiled
                time(m, paged, state, token, logits, depth, steps);
                time(m, contiguous, state, token, logits, depth, steps);
            }
            for (int r = 0; r < rounds; r++) {
                if (r % 2 == 0) {
                    tPaged[r] = time(m, paged, state, token, logits, depth, steps);
                    tContiguous[r] = time(m, contiguous, state, token, logits, depth, steps);
                } else {
                    tContiguous[r] = time(m, contiguous, state, token, logits, depth, steps);
                    tPaged[r] = time(m, paged, state, token, logits, depth, steps);
                }
            }
            double p = median(tPaged), c = median(tContiguous);
            double[] ratios = new double[rounds];
            for (int r = 0; r < rounds; r++) {
                ratios[r] = tPaged[r] / tContiguous[r];
            }
            System.out.printf(Locale.ROOT, "depth %d, %d threads, %d rounds x %d steps: paged %.1f us/step (%.0f tok/s), contiguous %.1f us/step"
                            + " (%.0f tok/s); paged/contiguous time: ratio of medians %.3f, median of per-round ratios %.3f%n",
                    depth, threads, rounds, steps, p, 1e6 / p, c, 1e6 / c, p / c, median(ratios));
            paged.close();
            contiguous.close();
        }
    }

    private static double time(CausalLm m, KvCache cache, ForwardState state, int[] token, float[] logits, int depth, int steps) {
        long t0 = System.nanoTime();
        for (int i = 0; i < steps; i++) {
            m.forward(token, 0, 1, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
            cache.truncate(depth);
        }
        return (System.nanoTime() - t0) / 1e3 / steps;
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }
}
