package dev.lockstep.kernels;

/**
 * Rotary position embedding, NEOX / rotate-half layout (HF {@code apply_rotary_pos_emb}): for a head
 * vector {@code x} of {@code headDim} and {@code h = headDim/2},
 * {@code x'[i] = x[i]*cos[i] - x[i+h]*sin[i]}, {@code x'[i+h] = x[i+h]*cos[i+h] + x[i]*sin[i+h]},
 * where {@code cos/sin[i] = cos/sin(pos * invFreq[i mod h])}.
 *
 * <p>The angle tables are computed exactly as HF does in float32: {@code invFreq[i] = 1 / theta^(2i/d)} with
 * the power and the reciprocal rounded to float, and {@code angle = float(pos) * invFreq} rounded to float
 * before cos/sin. Matching HF's rounding matters at long positions, where the angle is large.
 */
public final class Rope {
    private final int headDim;
    private final int half;
    private final float[] invFreq;
    private float[] cos;
    private float[] sin;
    private int positions;

    public Rope(int headDim, double theta, int initialPositions) {
        if (headDim <= 0 || headDim % 2 != 0) {
            throw new IllegalArgumentException("RoPE head_dim must be positive and even, got " + headDim);
        }
        this.headDim = headDim;
        this.half = headDim / 2;
        this.invFreq = new float[half];
        for (int i = 0; i < half; i++) {
            float exponent = (float) (2 * i) / headDim;
            float pow = (float) Math.pow((float) theta, exponent);
            invFreq[i] = 1.0f / pow;
        }
        this.cos = new float[0];
        this.sin = new float[0];
        ensurePositions(Math.max(1, initialPositions));
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
                c[p * half + i] = (float) Math.cos(angle);
                s[p * half + i] = (float) Math.sin(angle);
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
