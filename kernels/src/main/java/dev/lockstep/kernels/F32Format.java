package dev.lockstep.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** IEEE binary32: the tiled layout holds one element per lane word, loaded as floats directly. */
public final class F32Format extends DenseFormat {
    static final F32Format INSTANCE = new F32Format();
    private static final ValueLayout.OfFloat FLOAT_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private F32Format() {
        super("F32", 4);
    }

    @Override
    float decode(int word, int part) {
        return Float.intBitsToFloat(word);
    }

    @Override
    float read(MemorySegment data, long offsetBytes) {
        return data.get(FLOAT_LE, offsetBytes);
    }

    @Override
    boolean nonFinite(int bits) {
        return (bits & 0x7f800000) == 0x7f800000;
    }

    @Override
    void rowToFloat(WeightMatrix m, int row, float[] out, int outOff) {
        MemorySegment.copy(m.data(), FLOAT_LE, (long) row * m.cols() * 4, out, outOff, m.cols());
    }

    @Override
    public void matmulVector(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                             float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        PanamaKernels.matmulDense(PanamaKernels.DENSE_F32, w, x, xOff, xStride, nTokens, out, outOff, outStride, rowStart, rowEnd);
    }

    @Override
    public String vectorKernel() {
        return "f32 tiled: float loads + fma, 4 tiles per pass";
    }
}
