package dev.lockstep.kernels;

/**
 * FP8 E4M3 ({@code float8_e4m3fn}), the NVFP4 block-scale format: S.EEEE.MMM, exponent bias 7; normal
 * (E = 1..15) = 2^(E-7) * (1 + M/8), subnormal (E = 0) = M * 2^-9; no infinities; NaN only S.1111.111; the
 * largest finite value is 0x7E = 448.
 */
public final class E4M3 {
    public static final float MAX = 448f;
    /** The NaN pattern with the sign clear. */
    public static final int NAN_BITS = 0x7f;

    private static final float[] VALUES = new float[256];

    static {
        for (int b = 0; b < 256; b++) {
            VALUES[b] = decodeArithmetic(b);
        }
    }

    private E4M3() {
    }

    /** The float value of an E4M3 byte (exact; NaN for 0x7F and 0xFF). */
    public static float toFloat(int bits) {
        return VALUES[bits & 0xff];
    }

    /**
     * The positive E4M3 byte's value computed from its bits: {@code bits << 20} read as a float32 is
     * 2^(E-127) * (1 + M/8) for a normal byte and M * 2^-129 for a subnormal one (a float32 denormal), so one
     * exact multiplication by 2^120 gives the value in both cases. The vector kernels use this form.
     */
    static float decodeArithmetic(int bits) {
        int magnitude = bits & 0x7f;
        if (magnitude == NAN_BITS) {
            return Float.NaN;
        }
        float v = Float.intBitsToFloat(magnitude << 20) * 0x1p120f;
        return (bits & 0x80) != 0 ? -v : v;
    }

    /**
     * {@code x} clamped to [-448, 448] and rounded to the nearest E4M3 value, ties to even: PyTorch's
     * {@code x.clamp(-448, 448).to(torch.float8_e4m3fn)}. NaN gives {@link #NAN_BITS}.
     */
    public static int fromFloat(float x) {
        if (Float.isNaN(x)) {
            return NAN_BITS;
        }
        int sign = (Float.floatToRawIntBits(x) >>> 31) << 7;
        float a = Math.min(Math.abs(x), MAX);
        int magnitude;
        if (a < 0x1p-6f) {
            // subnormal quantum 2^-9: the scaled value is exact; rint rounds half to even. 8 (= 2^-6) is
            // exactly the bits of the smallest normal, so no special case.
            magnitude = (int) Math.rint(Math.scalb(a, 9));
        } else {
            int e = Math.getExponent(a);                     // -6 .. 8
            int q = (int) Math.rint(Math.scalb(a, 3 - e));   // 8 .. 16, exact scaling, half to even
            if (q == 16) {
                e++;
                q = 8;
            }
            magnitude = ((e + 7) << 3) | (q - 8);
        }
        return sign | magnitude;
    }
}
