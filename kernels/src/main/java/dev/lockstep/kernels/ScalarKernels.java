package dev.lockstep.kernels;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Reference implementations: the formulas written out, sums accumulated left to right in float32.
 * The Vector API kernels are tested against these.
 */
public final class ScalarKernels implements Kernels {
    static final ValueLayout.OfFloat F32_NATIVE = ValueLayout.JAVA_FLOAT;

    @Override
    public String name() {
        return "scalar";
    }

    /** Tile size used when this reference is the engine's kernel; the result does not depend on it. */
    static final int TILE_ROWS = 8;

    @Override
    public int tileRows() {
        return TILE_ROWS;
    }

    @Override
    public String matmulKernel(WeightFormat format) {
        return "scalar reference: the " + format.name() + " definition (tiled walk)";
    }

    @Override
    public void matmul(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                       float[] out, int outOff, int outStride, int rowStart, int rowEnd) {
        w.format().matmulReference(w, x, xOff, xStride, nTokens, out, outOff, outStride, rowStart, rowEnd);
    }

    @Override
    public void axpy(float alpha, float[] x, int xOff, float[] y, int yOff, int n) {
        for (int i = 0; i < n; i++) {
            y[yOff + i] += alpha * x[xOff + i];
        }
    }

    @Override
    public void rmsNorm(float[] x, int xOff, float[] weight, float eps, float[] out, int outOff, int n) {
        float inv = rmsInverse(x, xOff, eps, n);
        for (int i = 0; i < n; i++) {
            out[outOff + i] = weight[i] * (x[xOff + i] * inv);
        }
    }

    /**
     * {@code 1 / sqrt(mean(x^2) + eps)}, the sum of squares as a sequential fma chain. Shared by both kernel
     * sets so RMSNorm is bit-identical everywhere; {@code n} is a hidden size or a head size, so the serial
     * chain costs a few microseconds per token.
     */
    static float rmsInverse(float[] x, int xOff, float eps, int n) {
        float sumSquares = 0f;
        for (int i = 0; i < n; i++) {
            sumSquares = Math.fma(x[xOff + i], x[xOff + i], sumSquares);
        }
        return rmsInverseOfSum(sumSquares, eps, n);
    }

    /** {@code 1 / sqrt(sumSquares / n + eps)}, as {@link #rmsInverse} finishes it. */
    static float rmsInverseOfSum(float sumSquares, float eps, int n) {
        return (float) (1.0 / Math.sqrt(sumSquares / n + eps));
    }

    @Override
    public void siluMul(float[] gate, int gateOff, float[] up, int upOff, float[] out, int outOff, int n) {
        siluMulScalar(gate, gateOff, up, upOff, out, outOff, n);
    }

    static void siluMulScalar(float[] gate, int gateOff, float[] up, int upOff, float[] out, int outOff, int n) {
        for (int i = 0; i < n; i++) {
            float g = gate[gateOff + i];
            out[outOff + i] = g / (1f + Exp.exp(-g)) * up[upOff + i];
        }
    }

    @Override
    public void softmax(float[] x, int off, int n) {
        Softmax.inPlace(x, off, n);
    }

    @Override
    public void attentionScores(float[] q, int qOff, int nHeads, int headDim, MemorySegment[] keys, long[] keyOffsetsBytes,
                                int nBlocks, float[] scores, int scoresOff, int scoresStride) {
        int block = dev.lockstep.memory.KvBlockDescriptor.BLOCK_TOKENS;
        for (int i = 0; i < nBlocks; i++) {
            long base = keyOffsetsBytes[i] >> 2;
            for (int h = 0; h < nHeads; h++) {
                for (int s = 0; s < block; s++) {
                    float acc = 0f;
                    for (int d = 0; d < headDim; d++) {
                        acc = Math.fma(q[qOff + h * headDim + d], keys[i].getAtIndex(F32_NATIVE, base + (long) d * block + s), acc);
                    }
                    scores[scoresOff + h * scoresStride + i * block + s] = acc;
                }
            }
        }
    }

    @Override
    public void attentionValues(float[] p, int pOff, int pStride, int nHeads, int nSlots, MemorySegment values,
                                long valueOffsetBytes, long valueRowBytes, float[] out, int outOff, int headDim) {
        for (int h = 0; h < nHeads; h++) {
            for (int s = 0; s < nSlots; s++) {
                float w = p[pOff + h * pStride + s];
                long row = (valueOffsetBytes + s * valueRowBytes) >> 2;
                for (int d = 0; d < headDim; d++) {
                    int o = outOff + h * headDim + d;
                    out[o] = Math.fma(w, values.getAtIndex(F32_NATIVE, row + d), out[o]);
                }
            }
        }
    }
}
