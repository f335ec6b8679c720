package dev.lockstep.kernels;

/**
 * The scalar definition of {@link Kernels#softmax}: numerically stable, float32, {@link Exp#exp}, the sum
 * taken left to right (fixed order, so deterministic).
 */
public final class Softmax {
    private Softmax() {
    }

    /** Replaces {@code x[off .. off+n)} by {@code exp(x - max) / sum(exp(x - max))}. */
    public static void inPlace(float[] x, int off, int n) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, x[off + i]);
        }
        float sum = 0f;
        for (int i = 0; i < n; i++) {
            float e = Exp.exp(x[off + i] - max);
            x[off + i] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int i = 0; i < n; i++) {
            x[off + i] *= inv;
        }
    }
}
