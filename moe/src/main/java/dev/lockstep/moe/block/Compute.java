package dev.lockstep.moe.block;

import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.kernels.WorkerPool;

/**
 * The kernels and the worker pool a forward pass runs on, with the parallel matmul shapes blocks use.
 * Work is split in whole weight tiles, so no tile is computed twice by two workers. One forward runs at a
 * time per model (see {@code CausalLm}); the matmul task object is therefore reused from call to call, so
 * dispatching allocates nothing.
 */
public final class Compute {
    private final Kernels kernels;
    private final WorkerPool pool;
    private final MatmulTask task = new MatmulTask();

    public Compute(Kernels kernels, WorkerPool pool) {
        this.kernels = kernels;
        this.pool = pool;
    }

    public Kernels kernels() {
        return kernels;
    }

    public WorkerPool pool() {
        return pool;
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
            pool.forRange(tiles(a) + tiles(b) + tiles(c), t);
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
