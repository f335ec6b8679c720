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
 * </ul>
 * Results are bit-identical across all of them.
 *
 * @param workers      0 for fork-join, else the schedule's workers (the calling thread is worker 0)
 * @param placement    how the MoE experts are split (scheduled only)
 * @param pin          pin each schedule worker to a CPU
 * @param epochSteps   schedule workers meet at an epoch barrier every this many steps
 * @param ringVectors  320-byte slots per link ring
 * @param idle         how a schedule worker waits at a RECV
 */
public record ExecutionPlan(int workers, Placement placement, boolean pin, int epochSteps, int ringVectors, Idle idle) {
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

    public ExecutionPlan {
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

    /** This plan with workers waiting as {@code idle} says. */
    public ExecutionPlan withIdle(Idle idle) {
        return new ExecutionPlan(workers, placement, pin, epochSteps, ringVectors, idle);
    }

    public boolean isScheduled() {
        return workers > 0;
    }

    @Override
    public String toString() {
        return isScheduled() ? "schedule, " + workers + " workers, placement " + placement.name().toLowerCase() + (pin ? ", pinned" : "")
                + ", idle " + idle.name().toLowerCase()
                : "fork-join";
    }
}
