package dev.lockstep.kernels;

/**
 * float32 {@code exp} built only from IEEE operations that every implementation rounds the same way
 * (fma, add, mul, min/max, integer bit moves): the scalar form here and the Vector API form in
 * {@code PanamaKernels.expLoop} run the identical sequence, so they agree bit for bit, in the interpreter
 * and in C2. ({@code Math.exp} and the Vector API's {@code EXP} do not promise that: the latter uses
 * different code in the interpreter and in compiled code.)
 *
 * <p>Cephes {@code expf}: {@code n = round(x / ln 2)} by the 1.5·2^23 trick, {@code r = x - n ln 2} in two
 * fma steps (Cody–Waite), a degree-6 polynomial for {@code e^r} on |r| <= ln2/2, times {@code 2^n} built
 * in the exponent bits. Max error ~1 ulp on [-87, 88]; inputs below -87 give 0, above 88 are clamped.
 */
public final class Exp {
    static final float LOG2E = 1.44269504088896341f;
    static final float MAGIC = 12582912f; // 1.5 * 2^23: adding it rounds to an integer, kept in the low mantissa bits
    static final int MAGIC_BITS = Float.floatToRawIntBits(MAGIC);
    static final float LN2_HI = 0.693359375f;
    static final float LN2_LO = -2.12194440e-4f;
    static final float P0 = 1.9875691500e-4f;
    static final float P1 = 1.3981999507e-3f;
    static final float P2 = 8.3334519073e-3f;
    static final float P3 = 4.1665795894e-2f;
    static final float P4 = 1.6666665459e-1f;
    static final float P5 = 5.0000001201e-1f;
    static final float MIN_INPUT = -87f;
    static final float MAX_INPUT = 88f;

    private Exp() {
    }

    public static float exp(float x) {
        float xc = Math.max(Math.min(x, MAX_INPUT), MIN_INPUT);
        float t = Math.fma(xc, LOG2E, MAGIC);
        float n = t - MAGIC;
        float r = Math.fma(n, -LN2_HI, xc);
        r = Math.fma(n, -LN2_LO, r);
        float p = Math.fma(P0, r, P1);
        p = Math.fma(p, r, P2);
        p = Math.fma(p, r, P3);
        p = Math.fma(p, r, P4);
        p = Math.fma(p, r, P5);
        float y = Math.fma(p, r * r, r) + 1f;
        float scale = Float.intBitsToFloat((Float.floatToRawIntBits(t) - MAGIC_BITS + 127) << 23);
        float e = y * scale;
        return x < MIN_INPUT ? 0f : e;
    }
}
