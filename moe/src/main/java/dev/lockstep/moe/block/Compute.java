package dev.lockstep.moe.block;

import dev.lockstep.interconnect.schedule.Schedule;
import dev.lockstep.interconnect.schedule.ScheduleExecutor;
import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.moe.ExecutionPlan;

/**
 * The kernels and the workers a forward pass runs on, with the parallel shapes blocks use. Blocks describe
 * their parallel work as regions ({@link #forRange}, the matmul shapes, {@link #dataRegion}); how a region runs
 * is the executor's: fork-join on a {@link WorkerPool} (chunks claimed as they come), or a compiled schedule on
 * pinned workers ({@link ScheduledSteps}). Work is split in whole weight tiles, so no tile is computed twice.
 * One forward runs at a time per model (see {@code CausalLm}); the task objects are therefore reused from call
 * to call, so dispatching allocates nothing.
 */
public final class Compute implements AutoCloseable {
    /**
     * Floats every array a matmul writes is allocated beyond its last row: a tile's vector store then always fits in
     * the array, even for a matrix whose row count is not a multiple of the tile (8 experts, a 1-row shared-expert
     * gate, MLA's 40-row kv_a on the tiny models; 60 experts on Qwen1.5-MoE). A masked store that runs past the end of
     * an array makes the Vector API check each lane, a path C2 does not always intrinsify: it allocated 380-640 bytes
     * per decode step in a JVM that had run the other tests (ZeroAllocationTest, JFR). Padding changes no value.
     */
    public static final int OUTPUT_PAD = 16;

    private final Kernels kernels;
    private final WorkerPool pool;
    private final ScheduledSteps schedule;
    private final MatmulTask task = new MatmulTask();
    private final ExecutionPlan plan;

    /** Fork-join on {@code pool}. */
    public Compute(Kernels kernels, WorkerPool pool) {
        this(kernels, pool, ExecutionPlan.FORK_JOIN);
    }

    /** As {@code plan} says: fork-join on {@code pool}, or a compiled schedule on workers of its own. */
    public Compute(Kernels kernels, WorkerPool pool, ExecutionPlan plan) {
        this.kernels = kernels;
        this.pool = pool;
        // disaggregated forwards run on the decoder's own workers (DisaggregatedSteps); this compute serves them fork-join
        this.schedule = plan.isScheduled() && !plan.isDisaggregated() ? new ScheduledSteps(plan) : null;
        this.plan = plan;
    }

    public Kernels kernels() {
        return kernels;
    }

    /** Workers a region may be split over (per-worker scratch is indexed by worker). */
    public int workers() {
        return schedule != null ? schedule.workers() : pool.threads();
    }

    /** How forwards run: fork-join, or the schedule's plan. */
    public ExecutionPlan plan() {
        return plan;
    }

    /** True when MoE experts are split by expert over schedule workers, their tokens moving as messages. */
    public boolean expertParallel() {
        return schedule != null && schedule.plan().placement() == ExecutionPlan.Placement.EXPERTS;
    }

    /** True when MoE experts are split by rows (any schedule with row placement). */
    public boolean expertRows() {
        return schedule != null && schedule.plan().placement() == ExecutionPlan.Placement.ROWS;
    }

    /** The schedule executor, or null when fork-join. */
    public ScheduleExecutor scheduleExecutor() {
        return schedule != null ? schedule.executor() : null;
    }

    /** The compiled schedule a batch of {@code tokens} tokens and {@code logitsRows} logits rows runs, or null. */
    public Schedule schedule(int tokens, int logitsRows) {
        return schedule != null ? schedule.schedule(tokens, logitsRows) : null;
    }

    /**
     * Starts a forward of {@code tokens} tokens with {@code logitsRows} logits rows (every region's size follows
     * from them). Under a schedule the first step of a shape bucket is recorded and compiled, later ones run its
     * programs; fork-join ignores it.
     */
    public void beginStep(int tokens, int logitsRows) {
        if (schedule != null) {
            schedule.begin(tokens, logitsRows);
        }
    }

    /** Ends the forward begun by {@link #beginStep}. */
    public void endStep() {
        if (schedule != null) {
            schedule.end();
        }
    }

    /** Ends a forward that failed midway, letting every worker finish its program. */
    public void abortStep() {
        if (schedule != null) {
            schedule.abort();
        }
    }

    /** A region of {@code items} independent items, split over the workers. */
    public void forRange(String name, int items, WorkerPool.RangeTask task) {
        if (schedule != null) {
            schedule.forRange(name, items, task);
        } else {
            pool.forRange(items, task);
        }
    }

    /** A region whose data moves between workers as messages (schedule only). */
    public void dataRegion(String name, DataRegion region) {
        if (schedule == null) {
            throw new IllegalStateException("data regions run on a schedule; fork-join has none");
        }
        schedule.dataRegion(name, region);
    }

    @Override
    public void close() {
        if (schedule != null) {
            schedule.close();
        }
    }

    /** {@code out[t, r] = w[r, :] . x[t, :]} for {@code n} tokens; tiles split across the pool. */
    public void matmul(WeightMatrix w, float[] x, int n, float[] out) {
        matmul(w, x, 0, n, out);
    }

    /** As {@link #matmul(WeightMatrix, float[], int, float[])} with the tokens starting at {@code x[xOff]}. */
    public void matmul(WeightMatrix w, float[] x, int xOff, int n, float[] out) {
        run(x, xOff, n, w, out, null, null, null, null);
    }

    /**
     * Three matmuls over the same input as one parallel region (q/k/v): their tile ranges are
     * concatenated and split once, so there is one dispatch, not three.
     */
    public void matmul3(float[] x, int n, WeightMatrix a, float[] outA, WeightMatrix b, float[] outB,
                        WeightMatrix c, float[] outC) {
        run(x, 0, n, a, outA, b, outB, c, outC);
    }

    /** Two matmuls over the same input as one parallel region (gate/up). */
    public void matmul2(float[] x, int n, WeightMatrix a, float[] outA, WeightMatrix b, float[] outB) {
        run(x, 0, n, a, outA, b, outB, null, null);
    }

    private void run(float[] x, int xOff, int n, WeightMatrix a, float[] outA, WeightMatrix b, float[] outB,
                     WeightMatrix c, float[] outC) {
        MatmulTask t = task;
        t.x = x;
        t.xOff = xOff;
        t.n = n;
        t.a = a;
        t.outA = outA;
        t.b = b;
        t.outB = outB;
        t.c = c;
        t.outC = outC;
        try {
            forRange(b == null ? "matmul" : c == null ? "matmul2" : "matmul3", tiles(a) + tiles(b) + tiles(c), t);
        } finally {
            t.x = t.outA = t.outB = t.outC = null;
            t.a = t.b = t.c = null;
        }
    }

    private static int tiles(WeightMatrix w) {
        return w == null ? 0 : w.tiles();
    }

    /** Up to three matrices over one input, their tile ranges concatenated. */
    private final class MatmulTask implements WorkerPool.RangeTask {
        float[] x;
        int xOff;
        int n;
        WeightMatrix a;
        WeightMatrix b;
        WeightMatrix c;
        float[] outA;
        float[] outB;
        float[] outC;

        @Override
        public void run(int worker, int start, int end) {
            int ta = tiles(a), tb = tiles(b);
            tileSlice(a, outA, start, end, 0);
            tileSlice(b, outB, start, end, ta);
            tileSlice(c, outC, start, end, ta + tb);
        }

        private void tileSlice(WeightMatrix w, float[] out, int start, int end, int base) {
            if (w == null) {
                return;
            }
            int s = Math.max(start - base, 0);
            int e = Math.min(end - base, w.tiles());
            if (s < e) {
                int tile = w.tileRows();
                kernels.matmul(w, x, xOff, w.cols(), n, out, 0, w.rows(), s * tile, Math.min(e * tile, w.rows()));
            }
        }
    }
}
