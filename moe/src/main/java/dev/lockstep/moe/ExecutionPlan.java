package dev.lockstep.moe;

/**
 * How a model's forward passes run on workers.
 * <ul>
 *   <li>{@link #FORK_JOIN} (the default): each parallel region is split over the {@code WorkerPool} the model was
 *       loaded with; workers claim chunks as they come, and the caller steals what nobody has claimed.</li>
 *   <li>{@link #scheduled}: {@code workers} pinned workers run a compiled schedule per batch shape (see
 *       {@link dev.lockstep.interconnect.schedule.ScheduleCompiler}): each region split statically, workers ordered
 *       by 320-byte-vector messages on a full mesh of rings. With {@link Placement#EXPERTS} each worker holds a
 *       contiguous range of every MoE layer's experts, and the tokens routed there and the expert outputs travel
 *       as vectors; with {@link Placement#ROWS} every matrix, experts included, is split by output rows.</li>
 *   <li>{@link #disaggregated}: attention-FFN disaggregation. {@code attentionWorkers} workers each own a set of
 *       sessions (their attention, norms, router and residual stream); the other {@code workers - attentionWorkers}
 *       own a range of every MoE layer's experts. Per MoE layer each token's normalized hidden state goes to the FFN
 *       workers that own its experts as 320-byte vectors, and their outputs come back; each attention worker's
 *       sessions split into two micro-batches that ping-pong between the pools on a dependency-driven schedule.</li>
 * </ul>
 * Results are bit-identical across all of them.
 *
 * @param workers      0 for fork-join, else the schedule's workers (the calling thread is worker 0)
 * @param placement    how the MoE experts are split (scheduled only)
 * @param pin          pin each schedule worker to a CPU
 * @param epochSteps   schedule workers meet at an epoch barrier every this many steps
 * @param ringVectors  320-byte slots per link ring
 * @param idle         how a schedule worker waits at a RECV
 * @param attentionWorkers 0, or (disaggregated) the workers that own sessions; the rest own experts
 */
public record ExecutionPlan(int workers, Placement placement, boolean pin, int epochSteps, int ringVectors, Idle idle,
                            int attentionWorkers) {
    public enum Placement { EXPERTS, ROWS }

    /** Agrona idle strategies: spin then yield then park (default), spin only, yield only. */
    public enum Idle {
        BACKOFF, SPIN, YIELD;

        public org.agrona.concurrent.IdleStrategy create() {
            return switch (this) {
                case BACKOFF -> dev.lockstep.interconnect.schedule.ScheduleExecutor.defaultIdle();
                case SPIN -> new org.agrona.concurrent.BusySpinIdleStrategy();
                case YIELD -> new org.agrona.concurrent.YieldingIdleStrategy();
            };
        }
    }

    public static final ExecutionPlan FORK_JOIN = new ExecutionPlan(0, Placement.ROWS, false, 1, 2, Idle.BACKOFF);
    /** Ring slots per link by default: 512 vectors (160 KiB), a decode step's largest message many times over. */
    public static final int DEFAULT_RING_VECTORS = 512;
    public static final int DEFAULT_EPOCH_STEPS = 16;
    public static final int MAX_WORKERS = 64;

    public ExecutionPlan(int workers, Placement placement, boolean pin, int epochSteps, int ringVectors, Idle idle) {
        this(workers, placement, pin, epochSteps, ringVectors, idle, 0);
    }

    public ExecutionPlan {
        if (attentionWorkers < 0 || (attentionWorkers > 0 && (attentionWorkers >= workers || placement != Placement.EXPERTS))) {
            throw new IllegalArgumentException("a disaggregated plan needs 1..workers-1 attention workers and expert placement, got "
                    + attentionWorkers + " of " + workers + " (" + placement + ")");
        }
        if (workers < 0 || workers > MAX_WORKERS) {
            throw new IllegalArgumentException("schedule workers must be in [1, " + MAX_WORKERS + "] (0: fork-join), got " + workers);
        }
        if (placement == null || idle == null) {
            throw new IllegalArgumentException("placement and idle must not be null");
        }
        if (epochSteps < 1) {
            throw new IllegalArgumentException("epoch must be >= 1 step, got " + epochSteps);
        }
        if (ringVectors < 2 || Integer.bitCount(ringVectors) != 1) {
            throw new IllegalArgumentException("ring capacity must be a power of two >= 2 vectors, got " + ringVectors);
        }
    }

    /** A compiled schedule over {@code workers} workers with experts split by {@code placement}. */
    public static ExecutionPlan scheduled(int workers, Placement placement, boolean pin) {
        if (workers < 1) {
            throw new IllegalArgumentException("a schedule needs at least one worker, got " + workers);
        }
        return new ExecutionPlan(workers, placement, pin, DEFAULT_EPOCH_STEPS, DEFAULT_RING_VECTORS, Idle.BACKOFF);
    }

    /**
     * Attention-FFN disaggregation: {@code attentionWorkers} workers own sessions (the calling thread is the first),
     * {@code ffnWorkers} own experts; links of {@code ringVectors} slots.
     */
    public static ExecutionPlan disaggregated(int attentionWorkers, int ffnWorkers, boolean pin) {
        if (attentionWorkers < 1 || ffnWorkers < 1 || attentionWorkers + ffnWorkers > MAX_WORKERS) {
            throw new IllegalArgumentException("disaggregated serving needs >= 1 attention and >= 1 FFN worker, at most "
                    + MAX_WORKERS + " in all; got " + attentionWorkers + " and " + ffnWorkers);
        }
        return new ExecutionPlan(attentionWorkers + ffnWorkers, Placement.EXPERTS, pin, DEFAULT_EPOCH_STEPS, DISAGGREGATED_RING_VECTORS,
                Idle.BACKOFF, attentionWorkers);
    }

    /** Ring slots per link when disaggregated: 2048 (640 KiB), two micro-batches' tokens of a decode step in flight on a link. */
    public static final int DISAGGREGATED_RING_VECTORS = 2048;

    /** This plan with workers waiting as {@code idle} says. */
    public ExecutionPlan withIdle(Idle idle) {
        return new ExecutionPlan(workers, placement, pin, epochSteps, ringVectors, idle, attentionWorkers);
    }

    public boolean isScheduled() {
        return workers > 0;
    }

    /** True for attention-FFN disaggregation ({@link #disaggregated}). */
    public boolean isDisaggregated() {
        return attentionWorkers > 0;
    }

    /** The workers that own experts when disaggregated (0 otherwise). */
    public int ffnWorkers() {
        return attentionWorkers > 0 ? workers - attentionWorkers : 0;
    }

    @Override
    public String toString() {
        if (isDisaggregated()) {
            return "disaggregated, " + attentionWorkers + " attention + " + ffnWorkers() + " FFN workers" + (pin ? ", pinned" : "")
                    + ", idle " + idle.name().toLowerCase();
        }
        return isScheduled() ? "schedule, " + workers + " workers, placement " + placement.name().toLowerCase() + (pin ? ", pinned" : "")
                + ", idle " + idle.name().toLowerCase()
                : "fork-join";
    }
}
