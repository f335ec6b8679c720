package dev.lockstep.kernels;

/**
 * Rotary position embedding, NEOX / rotate-half layout (HF {@code apply_rotary_pos_emb}): for a head
 * vector {@code x} of {@code headDim} and {@code h = headDim/2},
 * {@code x'[i] = x[i]*cos[i] - x[i+h]*sin[i]}, {@code x'[i+h] = x[i+h]*cos[i+h] + x[i]*sin[i+h]},
 * where {@code cos/sin[i] = cos/sin(pos * invFreq[i mod h]) * attentionFactor}.
 *
 * <p>The angle tables are computed exactly as HF does in float32: {@code invFreq[i] = 1 / theta^(2i/d)} with
 * the power and the reciprocal rounded to float (or the YaRN blend of {@link #yarn}), and
 * {@code angle = float(pos) * invFreq} rounded to float before cos/sin, then multiplied by the float attention
 * factor (1 except for YaRN). Matching HF's rounding matters at long positions, where the angle is large.
 */
public final class Rope {
    private final int headDim;
    private final int half;
    private final float[] invFreq;
    private final float attentionFactor;
    private float[] cos;
    private float[] sin;
    private int positions;

    public Rope(int headDim, double theta, int initialPositions) {
        this(headDim, defaultInvFreq(checkDim(headDim), theta), 1f, initialPositions);
    }

    private Rope(int headDim, float[] invFreq, float attentionFactor, int initialPositions) {
        this.headDim = checkDim(headDim);
        this.half = headDim / 2;
        this.invFreq = invFreq;
        this.attentionFactor = attentionFactor;
        this.cos = new float[0];
        this.sin = new float[0];
        ensurePositions(Math.max(1, initialPositions));
    }

    private static int checkDim(int headDim) {
        if (headDim <= 0 || headDim % 2 != 0) {
            throw new IllegalArgumentException("RoPE head_dim must be positive and even, got " + headDim);
        }
        return headDim;
    }

    /** HF's default inverse frequencies: {@code 1 / theta^(2i/d)}, the power and the reciprocal in float. */
    private static float[] defaultInvFreq(int headDim, double theta) {
        float[] f = new float[headDim / 2];
        for (int i = 0; i < f.length; i++) {
            float exponent = (float) (2 * i) / headDim;
            float pow = (float) Math.pow((float) theta, exponent);
            f[i] = 1.0f / pow;
        }
        return f;
    }

    /**
     * YaRN (HF {@code _compute_yarn_parameters}): each frequency blends the interpolated {@code 1/(factor*pos_freq)}
     * and the extrapolated {@code 1/pos_freq} by a linear ramp between the correction dimensions of
     * {@code betaFast} and {@code betaSlow} rotations over {@code originalMaxPositions} (floored/ceiled when
     * {@code truncate}); cos and sin are scaled by {@code attentionFactor} ({@code 0.1 ln(factor) + 1} when the
     * config gives none, as HF computes it when no mscale is set).
     */
    public static Rope yarn(int headDim, double theta, double factor, double betaFast, double betaSlow, int originalMaxPositions,
                            boolean truncate, Double attentionFactor, int initialPositions) {
        checkDim(headDim);
        int half = headDim / 2;
        double low = correctionDim(betaFast, headDim, theta, originalMaxPositions);
        double high = correctionDim(betaSlow, headDim, theta, originalMaxPositions);
        if (truncate) {
            low = Math.floor(low);
            high = Math.ceil(high);
        }
        low = Math.max(low, 0);
        high = Math.min(high, headDim - 1);
        if (low == high) {
            high += 0.001;
        }
        float lowF = (float) low, highF = (float) high;
        float[] f = new float[half];
        for (int i = 0; i < half; i++) {
            float posFreq = (float) Math.pow((float) theta, (float) (2 * i) / headDim);
            float extrapolation = 1.0f / posFreq;
            float interpolation = 1.0f / ((float) factor * posFreq);
            float ramp = Math.min(Math.max(((float) i - lowF) / (highF - lowF), 0f), 1f);
            float extrapolationFactor = 1f - ramp;
            f[i] = interpolation * (1f - extrapolationFactor) + extrapolation * extrapolationFactor;
        }
        double attention = attentionFactor != null ? attentionFactor : factor <= 1 ? 1.0 : 0.1 * Math.log(factor) + 1.0;
        return new Rope(headDim, f, (float) attention, initialPositions);
    }

    /** The dimension at which {@code rotations} full turns fit in {@code maxPositions} (YaRN's find_correction_dim). */
    private static double correctionDim(double rotations, int dim, double base, int maxPositions) {
        return (dim * Math.log(maxPositions / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
    }

    /** The factor cos and sin are scaled by (YaRN's attention factor; 1 otherwise). */
    public float attentionFactor() {
        return attentionFactor;
    }

    /** Grows the tables to cover positions {@code [0, n)}. Not thread-safe; call before parallel use. */
    public synchronized void ensurePositions(int n) {
        if (n <= positions) {
            return;
        }
        int newPositions = Math.max(n, positions * 2);
        float[] c = java.util.Arrays.copyOf(cos, newPositions * half);
        float[] s = java.util.Arrays.copyOf(sin, newPositions * half);
        for (int p = positions; p < newPositions; p++) {
            for (int i = 0; i < half; i++) {
                float angle = (float) p * invFreq[i];
                c[p * half + i] = (float) Math.cos(angle) * attentionFactor;
                s[p * half + i] = (float) Math.sin(angle) * attentionFactor;
            }
        }
        cos = c;
        sin = s;
        positions = newPositions;
    }

    public int headDim() {
        return headDim;
    }

    /** Rotates {@code x[off .. off+headDim)} in place for position {@code pos}. */
    public void apply(float[] x, int off, int pos) {
        float[] c = cos, s = sin;
        int base = pos * half;
        for (int i = 0; i < half; i++) {
            float x0 = x[off + i];
            float x1 = x[off + i + half];
            float ci = c[base + i], si = s[base + i];
            x[off + i] = x0 * ci - x1 * si;
            x[off + i + half] = x1 * ci + x0 * si;
        }
    }
}
