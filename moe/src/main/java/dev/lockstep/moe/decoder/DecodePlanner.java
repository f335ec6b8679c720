package dev.lockstep.moe.decoder;

import dev.lockstep.interconnect.schedule.MessageSpec;
import dev.lockstep.interconnect.schedule.Schedule;
import dev.lockstep.interconnect.schedule.ScheduleSimulator;
import dev.lockstep.moe.block.SparseMoeBlock;

/**
 * A disaggregated decode step sized on paper: the schedule the engine compiles for {@code sessions} sessions decoding
 * one token each, run by {@link ScheduleSimulator} with a cost model of its parts and a model of its links.
 *
 * <p>The roofline cost model: decode streams weights, so a part takes the bytes it reads over the memory bandwidth.
 * A lane's segment reads its layers' attention, norm and router weights once for all its tokens, plus each token's
 * KV over {@code context} positions per layer it covers (and the embedding rows, shared experts, dense layers and
 * lm_head where it runs them); an FFN worker's part reads the distinct experts of its range the lane's tokens picked,
 * {@code k (1 - (1 - topK/E)^n)} of its {@code k} for {@code n} tokens picking uniformly. A tokens message carries
 * {@code k + n topK k/E} rows' worth of floats, its output {@code n topK k/E} rows. Fixed costs (a dispatch, a small
 * matmul's setup) are not in it: on a model as small as the bundled one they dominate, and a measured run
 * ({@link #measured}) shows by how much.
 */
public final class DecodePlanner {
    private DecodePlanner() {
    }

    /**
     * @param schedule    the compiled decode step
     * @param result      the simulation
     * @param laneTokens  tokens per lane (worker {@code w}'s micro-batch {@code m} is lane {@code 2w + m})
     * @param microBatches micro-batches per attention worker
     */
    public record Plan(Schedule schedule, ScheduleSimulator.Result result, int[] laneTokens, int microBatches) {
    }

    /** The roofline plan of a decode step of {@code sessions} sessions at {@code context} positions, memory at {@code bytesPerNs}. */
    public static Plan roofline(DecoderModel model, int sessions, int context, double bytesPerNs, ScheduleSimulator.LinkModel link) {
        DisaggregatedSteps steps = steps(model);
        int[] laneTokens = new int[steps.lanes()];
        DisaggregatedSteps.Compiled c = steps.decodeShape(sessions, laneTokens);
        ScheduleSimulator.Costs costs = new ScheduleSimulator.Costs() {
            @Override
            public double computeNanos(int worker, int computeIndex, int region) {
                int n = c.lane()[region] < 0 ? 0 : laneTokens[c.lane()[region]];
                if (n == 0) {
                    return 0;
                }
                return switch (c.kind()[region]) {
                    case DisaggregatedSteps.SEGMENT -> segmentBytes(model, steps, c.moeIndex()[region], n, context) / bytesPerNs;
                    case DisaggregatedSteps.EXPERTS -> expertBytes(steps, c.moeIndex()[region], c.ffnWorker()[region], n) / bytesPerNs;
                    default -> 0;
                };
            }

            @Override
            public int payloadFloats(MessageSpec m) {
                return expectedFloats(model, steps, c, laneTokens, m);
            }
        };
        return new Plan(c.schedule(), ScheduleSimulator.simulate(c.schedule(), costs, link), laneTokens, c.micro());
    }

    /**
     * The same step with each part taking its measured mean time (the decode steps this model ran with this shape
     * since it was loaded) and messages their expected size: the schedule and link model checked against a run.
     * Null when no step of that shape has run.
     */
    public static Plan measured(DecoderModel model, int sessions, ScheduleSimulator.LinkModel link) {
        DisaggregatedSteps steps = steps(model);
        int[] laneTokens = new int[steps.lanes()];
        DisaggregatedSteps.Compiled c = steps.decodeShape(sessions, laneTokens);
        long runs = c.runs()[0];
        if (runs == 0) {
            return null;
        }
        ScheduleSimulator.Costs costs = new ScheduleSimulator.Costs() {
            @Override
            public double computeNanos(int worker, int computeIndex, int region) {
                double[] p = c.partNanos()[worker];
                return computeIndex < p.length ? p[computeIndex] / runs : 0;
            }

            @Override
            public int payloadFloats(MessageSpec m) {
                return expectedFloats(model, steps, c, laneTokens, m);
            }
        };
        return new Plan(c.schedule(), ScheduleSimulator.simulate(c.schedule(), costs, link), laneTokens, c.micro());
    }

    /** Forgets the part times measured so far (say, of warm-up steps), so {@link #measured} reads only the steps after this. */
    public static void clearMeasurements(DecoderModel model) {
        steps(model).clearMeasurements();
    }

    private static DisaggregatedSteps steps(DecoderModel model) {
        DisaggregatedSteps steps = model.disaggregatedSteps();
        if (steps == null) {
            throw new IllegalArgumentException("the model runs " + model.executionPlan() + "; a plan needs a disaggregated one");
        }
        return steps;
    }

    /** Bytes lane segment {@code k} reads for {@code n} tokens at {@code context} positions. */
    static double segmentBytes(DecoderModel model, DisaggregatedSteps steps, int k, int n, int context) {
        DecoderModel.Layer[] layers = model.layerArray();
        int[] moes = steps.moeLayers();
        double bytes = 0;
        int from;
        if (k == 0) {
            bytes += (double) n * model.spec().hiddenSize() * 2; // embedding rows (bf16)
            from = 0;
        } else {
            bytes += steps.moe(moes[k - 1]).sharedBytes();
            from = moes[k - 1] + 1;
        }
        int to = k < moes.length ? moes[k] : layers.length;
        for (int l = from; l < to; l++) { // dense layers: the whole layer here
            bytes += layers[l].attention().weightBytesPerToken() + (double) n * context * model.spec().kv().layer(l).bytesPerPosition()
                    + layers[l].ffn().weightBytesPerToken();
        }
        if (k < moes.length) { // the MoE layer up to its router
            bytes += layers[to].attention().weightBytesPerToken() + (double) n * context * model.spec().kv().layer(to).bytesPerPosition()
                    + steps.moe(to).routerBytes();
        } else {
            bytes += model.lmHeadBytes();
        }
        return bytes;
    }

    /** Bytes FFN worker {@code f} reads for MoE layer index {@code k} and {@code n} tokens: the distinct experts of its range they pick. */
    static double expertBytes(DisaggregatedSteps steps, int k, int f, int n) {
        int l = steps.moeLayers()[k];
        SparseMoeBlock b = steps.moe(l);
        int e0 = steps.expertsFrom(l, f), e1 = steps.expertsFrom(l, f + 1);
        double untouched = Math.pow(1 - (double) b.topK() / b.nExperts(), n);
        return (e1 - e0) * (1 - untouched) * b.expertBytes(e0);
    }

    /** A message's expected floats: tokens to an FFN worker, or its output back (the rows its experts get on average). */
    static int expectedFloats(DecoderModel model, DisaggregatedSteps steps, DisaggregatedSteps.Compiled c, int[] laneTokens, MessageSpec m) {
        int region = m.region();
        if (c.lane()[region] < 0 || m.maxFloats() == 0) {
            return 0;
        }
        int n = laneTokens[c.lane()[region]];
        if (n == 0) {
            return 0;
        }
        int attention = steps.plan().attentionWorkers();
        int f = c.kind()[region] == DisaggregatedSteps.EXPERTS ? c.ffnWorker()[region] : m.to() - attention;
        int l = steps.moeLayers()[c.moeIndex()[region]];
        SparseMoeBlock b = steps.moe(l);
        int e0 = steps.expertsFrom(l, f), e1 = steps.expertsFrom(l, f + 1);
        int rows = (int) Math.round((double) n * b.topK() * (e1 - e0) / b.nExperts());
        int hidden = model.spec().hiddenSize();
        return c.kind()[region] == DisaggregatedSteps.EXPERTS ? rows * hidden : (e1 - e0) + rows * hidden;
    }
}
