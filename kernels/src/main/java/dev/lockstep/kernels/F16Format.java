package dev.lockstep.kernels;

import java.lang.foreign.MemorySegment;

/**
 * IEEE binary16. The vector kernel widens with integer operations and one exact multiplication: the 15
 * magnitude bits shifted left by 13 read as a float32 are the value times 2^-112 (normal or subnormal), so
 * multiplying by 2^112 gives the value; the sign bit moves to bit 31.
 */
public final class F16Format extends DenseFormat {
    static final F16Format INSTANCE = new F16Format();

    private F16Format() {
        super("F16", 2);
    }

    @Override
    float decode(int word, int part) {
        return Float.float16ToFloat((short) (part == 0 ? word : word >>> 16));
    }

    @Override
    float read(MemorySegment data, long offsetBytes) {
        return Float.float16ToFloat(data.get(SHORT_LE, offsetBytes));
    }

    @Override
    boolean nonFinite(int bits) {
        return (bits & 0x7c00) == 0x7c00;
    }

    @Override
    public void matmulVector(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                             float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        PanamaKernels.matmulDense(PanamaKernels.DENSE_F16, w, x, xOff, xStride, nTokens, out, outOff, outStride, rowStart, rowEnd);
    }

    @Override
    public String vectorKernel() {
        return "f16 tiled: integer widen (shift, mask, x2^112) + fma, 4 tiles per pass";
    }
}
