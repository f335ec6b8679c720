package dev.lockstep.moe.block;

import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.kernels.WorkerPool;

/** The kernels and the worker pool a forward pass runs on, with the parallel matmul shapes blocks use. */
public record Compute(Kernels kernels, WorkerPool pool) {

    /** {@code out[t, r] = w[r, :] . x[t, :]} for {@code n} tokens; rows split across the pool. */
    public void matmul(WeightMatrix w, float[] x, int n, float[] out) {
        int rows = w.rows();
        pool.forRange(rows, (worker, start, end) -> kernels.matmul(w, x, 0, w.cols(), n, out, 0, rows, start, end));
    }

    /**
     * Three matmuls over the same input as one parallel region (q/k/v, gate/up): the row ranges of
     * {@code a}, {@code b}, {@code c} are concatenated and split once, so there is one dispatch, not three.
     */
    public void matmul3(float[] x, int n, WeightMatrix a, float[] outA, WeightMatrix b, float[] outB,
                        WeightMatrix c, float[] outC) {
        int ra = a.rows(), rb = b.rows(), rc = c.rows();
        pool.forRange(ra + rb + rc, (worker, start, end) -> {
            rowSlice(a, x, n, outA, start, end, 0);
            rowSlice(b, x, n, outB, start, end, ra);
            rowSlice(c, x, n, outC, start, end, ra + rb);
        });
    }

    /** Two matmuls over the same input as one parallel region (gate/up). */
    public void matmul2(float[] x, int n, WeightMatrix a, float[] outA, WeightMatrix b, float[] outB) {
        int ra = a.rows(), rb = b.rows();
        pool.forRange(ra + rb, (worker, start, end) -> {
            rowSlice(a, x, n, outA, start, end, 0);
            rowSlice(b, x, n, outB, start, end, ra);
        });
    }

    private void rowSlice(WeightMatrix w, float[] x, int n, float[] out, int start, int end, int base) {
        int s = Math.max(start - base, 0);
        int e = Math.min(end - base, w.rows());
        if (s < e) {
            kernels.matmul(w, x, 0, w.cols(), n, out, 0, w.rows(), s, e);
        }
    }
}
