package dev.lockstep.kernels;

/**
 * FP4 E2M1, the NVFP4 element format: one nibble, bit 3 sign, bits 2-1 exponent, bit 0 mantissa, no
 * infinities or NaN. Codes 0-7 are 0, 0.5, 1, 1.5, 2, 3, 4, 6; codes 8-15 their negatives (0x8 is -0 and
 * does occur: small negative values quantize to it).
 */
public final class E2M1 {
    public static final float MAX = 6f;

    private static final float[] VALUES = {0f, 0.5f, 1f, 1.5f, 2f, 3f, 4f, 6f, -0f, -0.5f, -1f, -1.5f, -2f, -3f, -4f, -6f};

    private E2M1() {
    }

    /** The value of code {@code code & 0xF}. */
    public static float toFloat(int code) {
        return VALUES[code & 0xf];
    }

    /**
     * Rounds {@code x} to the nearest E2M1 code, ties to even, saturating at +-6 (NVIDIA ModelOpt's
     * {@code _cast_fp4} and compressed-tensors' {@code cast_to_fp4}): magnitudes up to 0.25 give 0,
     * (0.25, 0.75) 0.5, [0.75, 1.25] 1, (1.25, 1.75) 1.5, [1.75, 2.5] 2, (2.5, 3.5) 3, [3.5, 5] 4, above 5 6.
     * The sign bit is set for every {@code x < 0}, so small negatives give -0 (0x8). {@code x} must not be NaN.
     */
    public static int fromFloat(float x) {
        float a = Math.abs(x);
        // one comparison per decision boundary, '>' where the tie goes down and '>=' where it goes up;
        // branch-free, so quantizing random weights does not stall on mispredictions
        int magnitude = (a > 0.25f ? 1 : 0) + (a >= 0.75f ? 1 : 0) + (a > 1.25f ? 1 : 0) + (a >= 1.75f ? 1 : 0)
                + (a > 2.5f ? 1 : 0) + (a >= 3.5f ? 1 : 0) + (a > 5f ? 1 : 0);
        return magnitude | (x < 0 ? 8 : 0);
    }
}
