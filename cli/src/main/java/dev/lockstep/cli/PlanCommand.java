package dev.lockstep.cli;

import dev.lockstep.interconnect.VectorDescriptor;
import dev.lockstep.interconnect.schedule.Schedule;
import dev.lockstep.interconnect.schedule.ScheduleSimulator;
import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardBatch;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.decoder.DecodePlanner;
import dev.lockstep.moe.decoder.DecoderModel;
import dev.lockstep.moe.kv.KvCache;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/**
 * {@code lockstep plan}: a disaggregated decode step on paper, so a deployment beyond this machine can be sized:
 * the schedule the engine compiles for {@code --batch} sessions, run with a roofline cost model and a model of the
 * links ({@link ScheduleSimulator}); with {@code --measure}, the same step run here and the model checked against it.
 */
@Command(name = "plan", mixinStandardHelpOptions = true, description = {
        "Size attention-FFN disaggregation on paper: the compiled decode step's critical path, vectors per token per link,",
        "and where the step waits, for --batch sessions at --context positions over links of --link-gbps and --link-latency-ns."})
final class PlanCommand extends LoadingCommand implements Callable<Integer> {
    @Option(names = "--link-gbps", paramLabel = "G", defaultValue = "100", description = "Link rate in Gb/s (default ${DEFAULT-VALUE}).")
    double linkGbps;

    @Option(names = "--link-latency-ns", paramLabel = "L", defaultValue = "2000", description = "Link latency in ns (default ${DEFAULT-VALUE}).")
    long linkLatencyNs;

    @Option(names = "--batch", paramLabel = "B", defaultValue = "8", description = "Sessions decoding one token each per step (default ${DEFAULT-VALUE}).")
    int batch;

    @Option(names = "--context", paramLabel = "C", defaultValue = "1024", description = "Positions each session attends (default ${DEFAULT-VALUE}).")
    int context;

    @Option(names = "--memory-gbs", paramLabel = "M", description = {
            "Memory bandwidth per worker in GB/s for the roofline costs (default: measured here, one thread)."})
    Double memoryGbs;

    @Option(names = "--measure", description = "Also run the step here (--batch sessions prefilled to --context, 64 warm-up and 64 timed decode steps) and compare.")
    boolean measure;

    private static final int WARMUP_STEPS = 64;

    @Override
    public Integer call() {
        if (batch < 1 || context < 1 || !(linkGbps > 0) || linkLatencyNs < 0 || (memoryGbs != null && !(memoryGbs > 0))) {
            throw new IllegalArgumentException("need --batch >= 1, --context >= 1, --link-gbps > 0, --link-latency-ns >= 0, --memory-gbs > 0");
        }
        executionOptions.mode = "disaggregated";
        double gbs = memoryGbs != null ? memoryGbs : dev.lockstep.kernels.ReadBandwidth.measure(1, 1L << 30, 3) / 1e9;
        ScheduleSimulator.LinkModel link = new ScheduleSimulator.LinkModel(linkGbps, linkLatencyNs);
        try (WorkerPool pool = new WorkerPool(1);
             CausalLm lm = ModelFamilies.load(ModelFamilies.readConfig(model), KernelProvider.get(), pool, loadOptions())) {
            if (!(lm instanceof DecoderModel dm)) {
                throw new IllegalArgumentException("plan needs a decoder model");
            }
            if (context + WARMUP_STEPS + 64 > lm.maxPositions()) {
                throw new IllegalArgumentException("--context " + context + " + 128 decode positions exceed the model's " + lm.maxPositions());
            }
            DecodePlanner.Plan plan = DecodePlanner.roofline(dm, batch, context, gbs, link);
            out().printf(Locale.ROOT, "plan: %s, %s; %d sessions decoding at %d positions; links %.1f Gb/s, %d ns; memory %.1f GB/s per worker%n",
                    model.getFileName(), lm.executionPlan(), batch, context, linkGbps, linkLatencyNs, gbs);
            printShape(plan);
            out().printf(Locale.ROOT, "%nroofline model (a part = the bytes it reads / memory bandwidth):%n");
            print(plan, plan.result());
            if (measure) {
                double measuredNs = run(lm);
                DecodePlanner.Plan partsMeasured = DecodePlanner.measured(dm, batch, link);
                out().printf(Locale.ROOT, "%nmeasured here: median decode step %.1f us (%.0f tok/s aggregate, %.1f tok/s per session)%n",
                        measuredNs / 1e3, batch * 1e9 / measuredNs, 1e9 / measuredNs);
                out().printf(Locale.ROOT, "model with the measured part times and the link model above: step %.1f us = %.2f x measured"
                                + " (the rest is the real links and idle wake-ups); roofline model: %.2f x measured%n",
                        partsMeasured.result().stepNanos() / 1e3, partsMeasured.result().stepNanos() / measuredNs,
                        plan.result().stepNanos() / measuredNs);
                print(partsMeasured, partsMeasured.result());
            }
        }
        return 0;
    }

    private void printShape(DecodePlanner.Plan plan) {
        Schedule s = plan.schedule();
        StringBuilder lanes = new StringBuilder();
        for (int i = 0; i < plan.laneTokens().length; i++) {
            if (plan.laneTokens()[i] > 0) {
                lanes.append(lanes.isEmpty() ? "" : ", ").append("w").append(i / 2).append('.').append(i % 2).append(' ').append(plan.laneTokens()[i]);
            }
        }
        out().printf(Locale.ROOT, "schedule: %d regions, %d ops, %d micro-batch(es) per attention worker (tokens per lane: %s), %d of %d links used%n",
                s.graph().regions(), s.totalOps(), plan.microBatches(), lanes, s.linksUsed(), s.workers() * (s.workers() - 1));
    }

    private void print(DecodePlanner.Plan plan, ScheduleSimulator.Result r) {
        int workers = plan.schedule().workers();
        int attention = workers - (int) java.util.stream.IntStream.range(0, workers).filter(w -> isFfn(plan, w)).count();
        out().printf(Locale.ROOT, "- step (critical path) %.1f us: %.0f tok/s aggregate, %.1f tok/s per session, %.2f us per token%n",
                r.stepNanos() / 1e3, batch * 1e9 / r.stepNanos(), 1e9 / r.stepNanos(), r.stepNanos() / 1e3 / batch);
        for (int w = 0; w < workers; w++) {
            out().printf(Locale.ROOT, "- w%d (%s): computes %.1f us, sends %.1f us, waits %.1f us, done at %.1f us%n", w,
                    w < attention ? "attention" : "FFN", r.busyNanos()[w] / 1e3, r.sendNanos()[w] / 1e3, r.waitNanos()[w] / 1e3,
                    r.finishNanos()[w] / 1e3);
        }
        List<String> links = new ArrayList<>();
        for (int l = 0; l < r.linkVectors().length; l++) {
            if (r.linkVectors()[l] > 0) {
                links.add(String.format(Locale.ROOT, "w%d->w%d %.1f (%,.0f B)", l / workers, l % workers, (double) r.linkVectors()[l] / batch,
                        (double) r.linkVectors()[l] / batch * VectorDescriptor.VECTOR_BYTES));
            }
        }
        out().printf(Locale.ROOT, "- vectors per token per link: %s%n", String.join(", ", links));
        out().printf(Locale.ROOT, "- where the step waits (longest):%n");
        for (ScheduleSimulator.Wait w : r.waits().subList(0, Math.min(5, r.waits().size()))) {
            out().printf(Locale.ROOT, "    w%d op %d %s: %.1f us%n", w.worker(), w.op(), w.what(), w.nanos() / 1e3);
        }
    }

    private static boolean isFfn(DecodePlanner.Plan plan, int w) {
        Schedule s = plan.schedule();
        for (int op = 0; op < s.ops(w); op++) {
            if (s.describe(w, op).startsWith("COMPUTE ffn")) {
                return true;
            }
        }
        return false;
    }

    /** Prefills --batch sessions to --context positions, then times 64 decode steps of all of them; the median step in ns. */
    private double run(CausalLm lm) {
        int vocab = lm.vocabSize();
        java.util.Random rnd = new java.util.Random(7);
        List<KvCache> caches = new ArrayList<>();
        try {
            ForwardState state = lm.newState(Math.max(batch, 64));
            float[] logits = new float[Math.max(batch, 64) * vocab];
            int[] chunk = new int[64];
            for (int q = 0; q < batch; q++) {
                KvCache c = lm.newKvCache(context + WARMUP_STEPS + 64);
                caches.add(c);
                for (int done = 0; done < context; done += 64) {
                    int n = Math.min(64, context - done);
                    for (int i = 0; i < n; i++) {
                        chunk[i] = rnd.nextInt(vocab);
                    }
                    lm.forward(chunk, 0, n, c, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                }
            }
            ForwardBatch b = new ForwardBatch(batch);
            long[] steps = new long[64];
            for (int step = -WARMUP_STEPS; step < steps.length; step++) {
                if (step == 0) {
                    DecodePlanner.clearMeasurements((DecoderModel) lm); // part times of the timed steps only
                }
                b.clear();
                for (int q = 0; q < batch; q++) {
                    b.add(b.addSequence(caches.get(q)), rnd.nextInt(vocab), true);
                }
                long t0 = System.nanoTime();
                lm.forward(b, state, logits, ForwardObserver.NONE);
                if (step >= 0) {
                    steps[step] = System.nanoTime() - t0;
                }
            }
            java.util.Arrays.sort(steps);
            return steps[steps.length / 2];
        } finally {
            for (KvCache c : caches) {
                c.close();
            }
        }
    }
}
