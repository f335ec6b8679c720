package dev.lockstep.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

/**
 * Vector API kernels. Vector width comes from {@code -Dlockstep.vector.bits} (128, 256, 512; default: the
 * platform's preferred width), chosen once at class load.
 *
 * <p>Reductions never use {@code reduceLanes(ADD)}: its lane order is unspecified and differs between the
 * interpreter's fallback and C2's intrinsic, which would make a token's logits depend on JIT timing. Every
 * dot product instead keeps one accumulator per output element, reduces it with a fixed halving tree
 * ({@link #sumLanes}), then adds the scalar tail in order. Tiling (4 rows or 4 tokens at a time) only
 * shares loads; it never changes an element's operation sequence.
 */
public final class PanamaKernels implements Kernels {
    static final VectorSpecies<Float> F;
    static final VectorSpecies<Integer> I;
    static final VectorSpecies<Short> S;
    static final int LANES;

    static {
        int bits = Integer.getInteger("lockstep.vector.bits", FloatVector.SPECIES_PREFERRED.vectorBitSize());
        F = VectorSpecies.of(float.class, VectorShape.forBitSize(bits));
        I = VectorSpecies.of(int.class, VectorShape.forBitSize(bits));
        S = VectorSpecies.of(short.class, VectorShape.forBitSize(bits / 2));
        LANES = F.length();
    }

    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ByteOrder NATIVE = ByteOrder.nativeOrder();
    private static final int TILE = 4;

    @Override
    public String name() {
        return "panama-" + F.vectorBitSize();
    }

    /** Fixed pairwise reduction: (lanes 0..L/2) + (L/2..L), halving until one lane is left. */
    static float sumLanes(FloatVector v) {
        for (int half = LANES / 2; half >= 1; half >>= 1) {
            v = v.add(v.slice(half));
        }
        return v.lane(0);
    }

    /** bf16 -> f32 for LANES consecutive elements: widen to int, shift into the high half. Exact. */
    private static FloatVector loadBf16(MemorySegment seg, long offBytes) {
        return ((IntVector) ShortVector.fromMemorySegment(S, seg, offBytes, LE)
                .convertShape(VectorOperators.S2I, I, 0))
                .lanewise(VectorOperators.LSHL, 16)
                .reinterpretAsFloats();
    }

    @Override
    public void matmul(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                       float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        switch (w.format()) {
            case BF16 -> {
                if (nTokens == 1) {
                    matvecBf16(w.data(), w.cols(), x, xOff, out, outOff, rowStart, rowEnd);
                } else {
                    matmulBf16(w.data(), w.cols(), x, xOff, xStride, nTokens, out, outOff, outStride, rowStart, rowEnd);
                }
            }
            // F32 and F16 weights: decode each row once to float32, then vector dot products against every token.
            case F32, F16 -> {
                int cols = w.cols();
                float[] row = new float[cols];
                for (int r = rowStart; r < rowEnd; r++) {
                    w.rowToFloat(r, row, 0);
                    for (int t = 0; t < nTokens; t++) {
                        out[outOff + t * outStride + r] = dot(row, 0, x, xOff + t * xStride, cols);
                    }
                }
            }
        }
    }

    /** One token: 4 rows at a time so four independent FMA chains hide the FMA latency. */
    private static void matvecBf16(MemorySegment w, int cols, float[] x, int xOff, float[] out, int outOff,
                                   int rowStart, int rowEnd) {
        int bound = F.loopBound(cols);
        long rowBytes = 2L * cols;
        int r = rowStart;
        for (; r + TILE <= rowEnd; r += TILE) {
            long b0 = r * rowBytes, b1 = b0 + rowBytes, b2 = b1 + rowBytes, b3 = b2 + rowBytes;
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            for (int k = 0; k < bound; k += LANES) {
                FloatVector xv = FloatVector.fromArray(F, x, xOff + k);
                long kb = 2L * k;
                a0 = loadBf16(w, b0 + kb).fma(xv, a0);
                a1 = loadBf16(w, b1 + kb).fma(xv, a1);
                a2 = loadBf16(w, b2 + kb).fma(xv, a2);
                a3 = loadBf16(w, b3 + kb).fma(xv, a3);
            }
            out[outOff + r] = tailBf16(w, b0, x, xOff, bound, cols, sumLanes(a0));
            out[outOff + r + 1] = tailBf16(w, b1, x, xOff, bound, cols, sumLanes(a1));
            out[outOff + r + 2] = tailBf16(w, b2, x, xOff, bound, cols, sumLanes(a2));
            out[outOff + r + 3] = tailBf16(w, b3, x, xOff, bound, cols, sumLanes(a3));
        }
        for (; r < rowEnd; r++) {
            long b0 = r * rowBytes;
            FloatVector a0 = FloatVector.zero(F);
            for (int k = 0; k < bound; k += LANES) {
                a0 = loadBf16(w, b0 + 2L * k).fma(FloatVector.fromArray(F, x, xOff + k), a0);
            }
            out[outOff + r] = tailBf16(w, b0, x, xOff, bound, cols, sumLanes(a0));
        }
    }

    /** Several tokens: each weight chunk is loaded and widened once and used for 4 tokens. */
    private static void matmulBf16(MemorySegment w, int cols, float[] x, int xOff, int xStride, int nTokens,
                                   float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        int bound = F.loopBound(cols);
        long rowBytes = 2L * cols;
        for (int r = rowStart; r < rowEnd; r++) {
            long b = r * rowBytes;
            int t = 0;
            for (; t + TILE <= nTokens; t += TILE) {
                int x0 = xOff + t * xStride, x1 = x0 + xStride, x2 = x1 + xStride, x3 = x2 + xStride;
                FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                for (int k = 0; k < bound; k += LANES) {
                    FloatVector wv = loadBf16(w, b + 2L * k);
                    a0 = wv.fma(FloatVector.fromArray(F, x, x0 + k), a0);
                    a1 = wv.fma(FloatVector.fromArray(F, x, x1 + k), a1);
                    a2 = wv.fma(FloatVector.fromArray(F, x, x2 + k), a2);
                    a3 = wv.fma(FloatVector.fromArray(F, x, x3 + k), a3);
                }
                int o = outOff + t * outStride + r;
                out[o] = tailBf16(w, b, x, x0, bound, cols, sumLanes(a0));
                out[o + outStride] = tailBf16(w, b, x, x1, bound, cols, sumLanes(a1));
                out[o + 2 * outStride] = tailBf16(w, b, x, x2, bound, cols, sumLanes(a2));
                out[o + 3 * outStride] = tailBf16(w, b, x, x3, bound, cols, sumLanes(a3));
            }
            for (; t < nTokens; t++) {
                int x0 = xOff + t * xStride;
                FloatVector a0 = FloatVector.zero(F);
                for (int k = 0; k < bound; k += LANES) {
                    a0 = loadBf16(w, b + 2L * k).fma(FloatVector.fromArray(F, x, x0 + k), a0);
                }
                out[outOff + t * outStride + r] = tailBf16(w, b, x, x0, bound, cols, sumLanes(a0));
            }
        }
    }

    private static float tailBf16(MemorySegment w, long rowBase, float[] x, int xOff, int from, int cols, float sum) {
        for (int k = from; k < cols; k++) {
            sum += WeightMatrix.bf16ToFloat(w.get(WeightMatrix.SHORT_LE, rowBase + 2L * k)) * x[xOff + k];
        }
        return sum;
    }

    @Override
    public float dot(float[] a, int aOff, float[] b, int bOff, int n) {
        int bound = F.loopBound(n);
        FloatVector acc = FloatVector.zero(F);
        for (int i = 0; i < bound; i += LANES) {
            acc = FloatVector.fromArray(F, a, aOff + i).fma(FloatVector.fromArray(F, b, bOff + i), acc);
        }
        float sum = sumLanes(acc);
        for (int i = bound; i < n; i++) {
            sum += a[aOff + i] * b[bOff + i];
        }
        return sum;
    }

    @Override
    public float dot(float[] a, int aOff, MemorySegment b, long bOffBytes, int n) {
        int bound = F.loopBound(n);
        FloatVector acc = FloatVector.zero(F);
        for (int i = 0; i < bound; i += LANES) {
            acc = FloatVector.fromArray(F, a, aOff + i).fma(FloatVector.fromMemorySegment(F, b, bOffBytes + 4L * i, NATIVE), acc);
        }
        float sum = sumLanes(acc);
        for (int i = bound; i < n; i++) {
            sum += a[aOff + i] * b.get(ScalarKernels.F32_NATIVE, bOffBytes + 4L * i);
        }
        return sum;
    }

    @Override
    public void axpy(float alpha, MemorySegment x, long xOffBytes, float[] y, int yOff, int n) {
        int bound = F.loopBound(n);
        FloatVector av = FloatVector.broadcast(F, alpha);
        for (int i = 0; i < bound; i += LANES) {
            // mul then add (not fma) so each element rounds exactly as the scalar reference does.
            FloatVector.fromMemorySegment(F, x, xOffBytes + 4L * i, NATIVE).mul(av)
                    .add(FloatVector.fromArray(F, y, yOff + i)).intoArray(y, yOff + i);
        }
        for (int i = bound; i < n; i++) {
            y[yOff + i] += alpha * x.get(ScalarKernels.F32_NATIVE, xOffBytes + 4L * i);
        }
    }

    @Override
    public void axpy(float alpha, float[] x, int xOff, float[] y, int yOff, int n) {
        int bound = F.loopBound(n);
        FloatVector av = FloatVector.broadcast(F, alpha);
        for (int i = 0; i < bound; i += LANES) {
            FloatVector.fromArray(F, x, xOff + i).mul(av).add(FloatVector.fromArray(F, y, yOff + i)).intoArray(y, yOff + i);
        }
        for (int i = bound; i < n; i++) {
            y[yOff + i] += alpha * x[xOff + i];
        }
    }

    @Override
    public void rmsNorm(float[] x, int xOff, float[] weight, float eps, float[] out, int outOff, int n) {
        ScalarKernels.rmsScale(x, xOff, weight, eps, out, outOff, n, dot(x, xOff, x, xOff, n));
    }

    /**
     * Scalar on purpose: a vector {@code EXP} may round differently in the interpreter's fallback than in
     * C2's intrinsic, which would break bitwise determinism; {@code Math.exp} uses one stub in both.
     */
    @Override
    public void siluMul(float[] gate, int gateOff, float[] up, int upOff, float[] out, int outOff, int n) {
        ScalarKernels.siluMulScalar(gate, gateOff, up, upOff, out, outOff, n);
    }
}
