package dev.lockstep.moe.block;

import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.kernels.WorkerPool;

/**
 * The kernels and the worker pool a forward pass runs on, with the parallel matmul shapes blocks use.
 * Work is split in whole weight tiles, so no tile is computed twice by two workers.
 */
public record Compute(Kernels kernels, WorkerPool pool) {

    /** {@code out[t, r] = w[r, :] . x[t, :]} for {@code n} tokens; tiles split across the pool. */
    public void matmul(WeightMatrix w, float[] x, int n, float[] out) {
        matmul(w, x, 0, n, out);
    }

    /** As {@link #matmul(WeightMatrix, float[], int, float[])} with the tokens starting at {@code x[xOff]}. */
    public void matmul(WeightMatrix w, float[] x, int xOff, int n, float[] out) {
        int rows = w.rows(), tile = w.tileRows();
        pool.forRange(w.tiles(), (worker, start, end) ->
                kernels.matmul(w, x, xOff, w.cols(), n, out, 0, rows, start * tile, Math.min(end * tile, rows)));
    }

    /**
     * Three matmuls over the same input as one parallel region (q/k/v): their tile ranges are
     * concatenated and split once, so there is one dispatch, not three.
     */
    public void matmul3(float[] x, int n, WeightMatrix a, float[] outA, WeightMatrix b, float[] outB,
                        WeightMatrix c, float[] outC) {
        int ta = a.tiles(), tb = b.tiles(), tc = c.tiles();
        pool.forRange(ta + tb + tc, (worker, start, end) -> {
            tileSlice(a, x, n, outA, start, end, 0);
            tileSlice(b, x, n, outB, start, end, ta);
            tileSlice(c, x, n, outC, start, end, ta + tb);
        });
    }

    /** Two matmuls over the same input as one parallel region (gate/up). */
    public void matmul2(float[] x, int n, WeightMatrix a, float[] outA, WeightMatrix b, float[] outB) {
        int ta = a.tiles(), tb = b.tiles();
        pool.forRange(ta + tb, (worker, start, end) -> {
            tileSlice(a, x, n, outA, start, end, 0);
            tileSlice(b, x, n, outB, start, end, ta);
        });
    }

    private void tileSlice(WeightMatrix w, float[] x, int n, float[] out, int start, int end, int base) {
        int s = Math.max(start - base, 0);
        int e = Math.min(end - base, w.tiles());
        if (s < e) {
            int tile = w.tileRows();
            kernels.matmul(w, x, 0, w.cols(), n, out, 0, w.rows(), s * tile, Math.min(e * tile, w.rows()));
        }
    }
}
