package dev.lockstep.moe;

/**
 * What a disaggregated model's steps did so far ({@link CausalLm#disaggregationStats}): the pools' busy time (the
 * union of their workers' parts), the time both pools were busy at once (ping-pong's overlap), the vectors each
 * link carried, and each worker's parts and epoch drift.
 *
 * @param steps              forwards run
 * @param pingPongSteps      of those, the ones that ran two micro-batches per attention worker
 * @param tokens             tokens forwarded
 * @param stepNanos          wall time of the steps, summed
 * @param attentionBusyNanos time at least one attention worker computed
 * @param ffnBusyNanos       time at least one FFN worker computed
 * @param overlapNanos       time both pools computed at once
 * @param linkVectors        per link {@code from * workers + to}: 320-byte vectors of token and expert-output messages, headers included
 * @param vectorsSent        every vector sent, step doorbells included
 * @param driftP99Nanos      per worker: p99 of its lag behind the first arrival at the epoch barrier
 * @param partsComputed      per worker: the parts (compiled COMPUTE ops) it ran
 * @param expertReplans      times the experts' ranges moved between FFN workers (routing counts drifted)
 * @param prefixRouted       new sessions sent to the attention worker holding a prefix of their KV pages
 */
public record DisaggregationStats(int attentionWorkers, int ffnWorkers, long steps, long pingPongSteps, long tokens, long stepNanos,
                                  long attentionBusyNanos, long ffnBusyNanos, long overlapNanos, long[] linkVectors, long vectorsSent,
                                  long[] driftP99Nanos, long[] partsComputed, long expertReplans, long prefixRouted) {
    public int workers() {
        return attentionWorkers + ffnWorkers;
    }

    public double attentionBusyFraction() {
        return stepNanos == 0 ? 0 : (double) attentionBusyNanos / stepNanos;
    }

    public double ffnBusyFraction() {
        return stepNanos == 0 ? 0 : (double) ffnBusyNanos / stepNanos;
    }

    /** Fraction of the step time both pools computed at once. */
    public double overlapFraction() {
        return stepNanos == 0 ? 0 : (double) overlapNanos / stepNanos;
    }

    /** Vectors per forwarded token on link {@code from -> to}. */
    public double vectorsPerToken(int from, int to) {
        return tokens == 0 ? 0 : (double) linkVectors[from * workers() + to] / tokens;
    }
}
