package dev.lockstep.moe.block;

import dev.lockstep.kernels.WorkerPool;

/**
 * A block's reusable argument holder for its parallel regions: the block sets the arguments once per
 * forward, then dispatches one phase after another. Reusing it (instead of a capturing lambda per region)
 * keeps a steady-state forward free of allocation.
 */
abstract class PhasedTask implements WorkerPool.RangeTask {
    private int phase;

    /** Selects the work the next dispatch runs; returns this for {@code pool.forRange(n, task.phase(p))}. */
    final PhasedTask phase(int phase) {
        this.phase = phase;
        return this;
    }

    @Override
    public final void run(int worker, int start, int end) {
        run(phase, worker, start, end);
    }

    abstract void run(int phase, int worker, int start, int end);

    /** Drops references to per-forward objects (cache, scratch) once the forward is done. */
    abstract void clear();
}
