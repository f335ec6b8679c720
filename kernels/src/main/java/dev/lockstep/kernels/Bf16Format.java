package dev.lockstep.kernels;

import java.lang.foreign.MemorySegment;

/** bfloat16: the upper half of an IEEE binary32, so widening is a shift (exact). */
public final class Bf16Format extends DenseFormat {
    static final Bf16Format INSTANCE = new Bf16Format();

    private Bf16Format() {
        super("BF16", 2);
    }

    @Override
    float decode(int word, int part) {
        return Float.intBitsToFloat(part == 0 ? word << 16 : word & 0xffff0000);
    }

    @Override
    float read(MemorySegment data, long offsetBytes) {
        return Float.intBitsToFloat(data.get(SHORT_LE, offsetBytes) << 16);
    }

    /** The reference's tile walk with the widening written out: a shift for the low half, a mask for the high. */
    @Override
    void accumulateTile(int[] word, int words, int tile, int cols, float[] x, int xo, float[] acc) {
        for (int p = 0; p < words; p++) {
            int base = p * tile;
            float x0 = x[xo + 2 * p];
            if (2 * p + 1 < cols) {
                float x1 = x[xo + 2 * p + 1];
                for (int lane = 0; lane < tile; lane++) {
                    int v = word[base + lane];
                    acc[lane] = Math.fma(Float.intBitsToFloat(v & 0xffff0000), x1, Math.fma(Float.intBitsToFloat(v << 16), x0, acc[lane]));
                }
            } else {
                for (int lane = 0; lane < tile; lane++) {
                    acc[lane] = Math.fma(Float.intBitsToFloat(word[base + lane] << 16), x0, acc[lane]);
                }
            }
        }
    }

    @Override
    boolean nonFinite(int bits) {
        return (bits & 0x7f80) == 0x7f80;
    }

    @Override
    public void matmulVector(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                             float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        PanamaKernels.matmulBf16(w, x, xOff, xStride, nTokens, out, outOff, outStride, rowStart, rowEnd);
    }

    @Override
    public String vectorKernel() {
        return "bf16 tiled: shift/mask widen + fma, 4 tiles (one token) or 8 tokens (several; a remainder of 1-3 runs the one-token pass) per pass";
    }
}
