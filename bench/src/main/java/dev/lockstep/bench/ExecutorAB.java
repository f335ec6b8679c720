package dev.lockstep.bench;

import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ExecutionPlan;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LoadOptions;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.kv.KvCache;
import org.HdrHistogram.Histogram;

import java.nio.file.Path;
import java.util.Locale;

/**
 * The fork-join executor against compiled schedules (experts and rows placement), in one JVM, alternating:
 * each round decodes {@code steps} tokens from an empty context on each executor in turn (the order rotating
 * every round), a timer around each step (the first 16 of a round left out: the previous executor's workers are
 * still spinning out their 200 us). Prints per executor the step latency p50/p99/p999 over all rounds,
 * and the ratio of each schedule's p50 to fork-join's. On a noisy host only these same-run ratios mean anything.
 *
 * <pre>java -cp bench/target/benchmarks.jar dev.lockstep.bench.ExecutorAB [model] [workers] [rounds] [steps] [pin]</pre>
 */
public final class ExecutorAB {
    private ExecutorAB() {
    }

    public static void main(String[] args) {
        Path model = Path.of(args.length > 0 ? args[0] : "models/kjv-qwen3moe");
        int workers = args.length > 1 ? Integer.parseInt(args[1]) : 2;
        int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 30;
        int steps = args.length > 3 ? Integer.parseInt(args[3]) : 256;
        boolean pin = args.length > 4 && Boolean.parseBoolean(args[4]);
        String[] names = {"fork-join", "schedule experts", "schedule rows"};
        ExecutionPlan[] plans = {ExecutionPlan.FORK_JOIN, ExecutionPlan.scheduled(workers, ExecutionPlan.Placement.EXPERTS, pin),
                ExecutionPlan.scheduled(workers, ExecutionPlan.Placement.ROWS, pin)};
        WorkerPool pool = new WorkerPool(workers, pin ? w -> dev.lockstep.interconnect.Affinity.pinCurrentThread(w % dev.lockstep.interconnect.Affinity.cpusAtStart()) : null);
        WorkerPool single = new WorkerPool(1);
        CausalLm[] models = new CausalLm[plans.length];
        try {
            for (int i = 0; i < plans.length; i++) {
                models[i] = ModelFamilies.load(ModelFamilies.readConfig(model), KernelProvider.get(), i == 0 ? pool : single,
                        LoadOptions.DEFAULT.withExecution(plans[i]));
            }
            if (pin) {
                dev.lockstep.interconnect.Affinity.pinCurrentThread(0);
            }
            Histogram[] h = new Histogram[plans.length];
            double[][] medians = new double[plans.length][rounds];
            for (int i = 0; i < plans.length; i++) {
                h[i] = new Histogram(60_000_000_000L, 3);
            }
            long warmEnd = System.nanoTime() + 10_000_000_000L;
            while (System.nanoTime() < warmEnd) {
                for (CausalLm m : models) {
                    decode(m, steps, null);
                }
            }
            for (int r = 0; r < rounds; r++) {
                for (int k = 0; k < plans.length; k++) {
                    int i = (r + k) % plans.length;
                    Histogram round = new Histogram(60_000_000_000L, 3);
                    decode(models[i], steps, round);
                    h[i].add(round);
                    medians[i][r] = round.getValueAtPercentile(50);
                }
            }
            for (int i = 0; i < plans.length; i++) {
                double q50 = h[i].getValueAtPercentile(50), q99 = h[i].getValueAtPercentile(99), q999 = h[i].getValueAtPercentile(99.9);
                double[] ratio = new double[rounds];
                for (int r = 0; r < rounds; r++) {
                    ratio[r] = medians[i][r] / medians[0][r];
                }
                java.util.Arrays.sort(ratio);
                System.out.printf(Locale.ROOT, "%-17s %d workers%s: p50 %.1f us, p99 %.1f us, p999 %.1f us (p99/p50 %.2f, p999/p50 %.2f), %.0f tok/s;"
                                + " p50 / fork-join's p50, median of per-round ratios: %.3f%n",
                        names[i], workers, pin ? " pinned" : "", q50 / 1e3, q99 / 1e3, q999 / 1e3, q99 / q50, q999 / q50,
                        1e9 / h[i].getMean(), ratio[rounds / 2]);
            }
        } finally {
            for (CausalLm m : models) {
                if (m != null) {
                    m.close();
                }
            }
            pool.close();
            single.close();
        }
    }

    /** Steps of each round left out of the histograms: the previous executor's workers are still spinning out. */
    static final int SETTLE_STEPS = 16;

    private static void decode(CausalLm m, int steps, Histogram h) {
        try (KvCache cache = m.newKvCache(steps)) {
            ForwardState state = m.newState(1);
            float[] logits = new float[m.vocabSize()];
            int[] token = {259};
            for (int i = 0; i < steps; i++) {
                long t0 = System.nanoTime();
                m.forward(token, 0, 1, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                long t1 = System.nanoTime();
                if (h != null && i >= SETTLE_STEPS) {
                    h.recordValue(t1 - t0);
                }
                token[0] = (token[0] * 31 + 7) % m.vocabSize();
            }
        }
    }
}
