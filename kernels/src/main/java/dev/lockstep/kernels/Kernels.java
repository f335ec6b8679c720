package dev.lockstep.kernels;

import java.lang.foreign.MemorySegment;

/**
 * The math the forward pass needs, over heap activations ({@code float[]}) and off-heap weights and KV
 * ({@link MemorySegment}). Two implementations: {@link ScalarKernels} (the reference: formulas written
 * out, sequential sums) and {@link PanamaKernels} (Vector API). {@link KernelProvider} picks one.
 *
 * <p>Determinism: every output element is computed by one fixed sequence of operations that depends only
 * on the operand lengths, never on how many rows or tokens a call covers, nor on which thread runs it.
 * So a row computed during batched prefill is bit-identical to the same row computed during decode.
 * Every operation here goes further: its order is fixed by its definition (sequential fused multiply-add
 * chains, elementwise operations, {@link Exp}), so every implementation and every vector width gives the
 * same bits, and so does a whole forward pass.
 */
public interface Kernels {
    String name();

    /** What runs a matmul on {@code format} here (for {@code inspect} and {@code bench}). */
    String matmulKernel(WeightFormat format);

    /** Rows per tile of the {@link WeightLayout#TILED} layout this implementation runs fastest on. */
    int tileRows();

    /**
     * Matrix times a block of token vectors: for {@code r} in {@code [rowStart, rowEnd)} and {@code t} in
     * {@code [0, nTokens)}: {@code out[outOff + t*outStride + r] = acc}, where {@code acc = 0} and then, for
     * {@code k = 0, 1, ..., cols-1} in order, {@code acc = fma(w[r, k], x[xOff + t*xStride + k], acc)}
     * (one rounding per step, as {@link Math#fma}). Any layout and format is accepted; the fast paths
     * are for {@link WeightLayout#TILED} with {@link #tileRows()} rows per tile.
     */
    void matmul(WeightMatrix w, float[] x, int xOff, int xStride, int nTokens,
                float[] out, int outOff, int outStride, int rowStart, int rowEnd);

    /** {@code y[yOff+i] += alpha * x[xOff+i]}. */
    void axpy(float alpha, float[] x, int xOff, float[] y, int yOff, int n);

    /**
     * RMSNorm as HF computes it in float32: {@code out = weight * (x * inv)}, {@code inv = 1 / sqrt(s/n + eps)}
     * with {@code s} the sum of squares as a sequential fma chain. {@code out} may alias {@code x}.
     * Bit-identical across implementations.
     */
    void rmsNorm(float[] x, int xOff, float[] weight, float eps, float[] out, int outOff, int n);

    /**
     * {@link #rmsNorm} of {@code rows} rows of {@code n}: row {@code r} of {@code x} at {@code xOff + r * xStride}
     * into {@code out} at {@code outOff + r * outStride}, each row's bits exactly as {@link #rmsNorm} gives them (an
     * implementation may run several rows' sums at once: each is its own sequential chain). Rows must not overlap.
     */
    default void rmsNormRows(float[] x, int xOff, int xStride, int rows, float[] weight, float eps, float[] out, int outOff,
                             int outStride, int n) {
        for (int r = 0; r < rows; r++) {
            rmsNorm(x, xOff + r * xStride, weight, eps, out, outOff + r * outStride, n);
        }
    }

    /**
     * SwiGLU activation: {@code out[i] = (gate[i] / (1 + exp(-gate[i]))) * up[i]}, float32, with
     * {@link Exp#exp}. Bit-identical across implementations.
     */
    void siluMul(float[] gate, int gateOff, float[] up, int upOff, float[] out, int outOff, int n);

    /**
     * Softmax in place over {@code x[off .. off+n)}: {@code m = max}, {@code e_i = Exp.exp(x_i - m)},
     * {@code s = e_0 + e_1 + ...} summed in index order, {@code x_i = e_i * (1/s)}. Bit-identical across
     * implementations.
     */
    void softmax(float[] x, int off, int n);

    /**
     * Attention scores against {@code nBlocks} KV blocks of one kv head (layout in {@code KvBlockDescriptor}): block
     * {@code i}'s keys ({@code [headDim][16]} floats) start at {@code keyOffsetsBytes[i]} in {@code keys[i]}; for query
     * head {@code h} in {@code [0, nHeads)} (vector {@code q[qOff + h*headDim ..]}), block {@code i} and slot {@code s}
     * in {@code [0, 16)}: {@code scores[scoresOff + h*scoresStride + 16*i + s] = acc}, {@code acc = 0} then for
     * {@code d = 0..headDim-1} in order {@code acc = fma(q[d], key[d][s], acc)}. Blocks are independent, so an
     * implementation may run several blocks' chains at once. Bit-identical across implementations.
     */
    void attentionScores(float[] q, int qOff, int nHeads, int headDim, MemorySegment[] keys, long[] keyOffsetsBytes,
                         int nBlocks, float[] scores, int scoresOff, int scoresStride);

    /**
     * Weighted sum of the value rows of one KV block, for the {@code nHeads} query heads that share one kv head
     * (their rows start at {@code valueOffsetBytes}): for each query head {@code h} in {@code [0, nHeads)} and slot
     * {@code s} in {@code [0, nSlots)} in order, {@code out[outOff + h*headDim + d] = fma(p[pOff + h*pStride + s],
     * value[s][d], out[...])}, where row {@code s} starts at {@code valueOffsetBytes + s*valueRowBytes}.
     * Bit-identical across implementations.
     */
    void attentionValues(float[] p, int pOff, int pStride, int nHeads, int nSlots, MemorySegment values,
                         long valueOffsetBytes, long valueRowBytes, float[] out, int outOff, int headDim);
}
