package dev.lockstep.cli;

import dev.lockstep.interconnect.schedule.Schedule;
import dev.lockstep.interconnect.schedule.ScheduleExecutor;
import dev.lockstep.moe.CausalLm;
import org.HdrHistogram.Histogram;

import java.util.Locale;

/** The lines {@code generate} and {@code bench} print about a compiled schedule: its size, traffic and latency. */
final class ScheduleReport {
    private ScheduleReport() {
    }

    /** "2 workers, placement experts, pinned; decode step: 218 ops (w0 150, w1 68), 2 of 2 links, <= 1,234 vectors/step". */
    static String size(CausalLm model) {
        ScheduleExecutor ex = model.scheduleExecutor();
        Schedule decode = model.schedule(1, 1);
        dev.lockstep.moe.ExecutionPlan plan = model.executionPlan();
        StringBuilder sb = new StringBuilder(plan.isDisaggregated()
                ? String.format(Locale.ROOT, "%d attention + %d FFN workers, %s, idle %s", plan.attentionWorkers(), plan.ffnWorkers(), ex.pinning(),
                        plan.idle().name().toLowerCase(Locale.ROOT))
                : String.format(Locale.ROOT, "%d workers, placement %s, %s, idle %s", ex.workers(),
                        plan.placement().name().toLowerCase(Locale.ROOT), ex.pinning(), plan.idle().name().toLowerCase(Locale.ROOT)));
        if (decode != null) {
            sb.append(String.format(Locale.ROOT, "; decode step: %d ops (", decode.totalOps()));
            for (int w = 0; w < decode.workers(); w++) {
                sb.append(w == 0 ? "" : ", ").append('w').append(w).append(' ').append(decode.ops(w));
            }
            sb.append(String.format(Locale.ROOT, "), %d regions, %d of %d links used, <= %,d vectors/step (320 B each)",
                    decode.graph().regions(), decode.linksUsed(), ex.workers() * (ex.workers() - 1), decode.maxVectorsPerStep()));
        }
        return sb.toString();
    }

    /**
     * Disaggregated: "attention pool busy 61% of the step time, FFN pool 48%, both at once 12%; 40% of steps ran two
     * micro-batches; vectors per token: w0->w1 21.0, w1->w0 20.0".
     */
    static String pools(CausalLm model) {
        dev.lockstep.moe.DisaggregationStats st = model.disaggregationStats();
        if (st == null) {
            return "";
        }
        StringBuilder sb = new StringBuilder(String.format(Locale.ROOT,
                "attention pool busy %.0f%% of the step time, FFN pool %.0f%%, both at once %.0f%%; %d of %d steps ran two micro-batches; vectors per token:",
                100 * st.attentionBusyFraction(), 100 * st.ffnBusyFraction(), 100 * st.overlapFraction(), st.pingPongSteps(), st.steps()));
        for (int from = 0; from < st.workers(); from++) {
            for (int to = 0; to < st.workers(); to++) {
                if (from != to && st.linkVectors()[from * st.workers() + to] > 0) {
                    sb.append(String.format(Locale.ROOT, " w%d->w%d %.1f (%,.0f B)", from, to, st.vectorsPerToken(from, to),
                            st.vectorsPerToken(from, to) * dev.lockstep.interconnect.VectorDescriptor.VECTOR_BYTES));
                }
            }
        }
        return sb.toString();
    }

    /** "p50 123.4 us, p99 234.5 us, p999 345.6 us (p99/p50 1.90, p999/p50 2.80)". */
    static String latency(Histogram h) {
        double q50 = h.getValueAtPercentile(50), q99 = h.getValueAtPercentile(99), q999 = h.getValueAtPercentile(99.9);
        return String.format(Locale.ROOT, "p50 %.1f us, p99 %.1f us, p999 %.1f us (p99/p50 %.2f, p999/p50 %.2f)",
                q50 / 1e3, q99 / 1e3, q999 / 1e3, q99 / q50, q999 / q50);
    }

    /** Each worker's lag behind the first arrival at the epoch barriers: "w1 p50 1.2 us p99 3.4 us". */
    static String drift(ScheduleExecutor ex) {
        StringBuilder sb = new StringBuilder();
        for (int w = 0; w < ex.workers(); w++) {
            Histogram d = ex.driftNs(w);
            if (d.getTotalCount() > 0) {
                sb.append(sb.isEmpty() ? "" : ", ").append(String.format(Locale.ROOT, "w%d p50 %.1f us p99 %.1f us", w,
                        d.getValueAtPercentile(50) / 1e3, d.getValueAtPercentile(99) / 1e3));
            }
        }
        return sb.isEmpty() ? "no epoch barrier yet" : sb.toString();
    }
}
