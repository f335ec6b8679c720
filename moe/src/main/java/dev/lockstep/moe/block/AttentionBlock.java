package dev.lockstep.moe.block;

import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.Softmax;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.moe.kv.KvCache;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Grouped-query causal self-attention over a {@link KvCache}, with optional per-head RMSNorm of q and k
 * (Qwen3's {@code q_norm}/{@code k_norm}) and rotate-half RoPE. Reference: HF {@code Qwen3MoeAttention}.
 */
public final class AttentionBlock {
    private final WeightMatrix wq; // [nHeads * headDim, hidden]
    private final WeightMatrix wk; // [nKvHeads * headDim, hidden]
    private final WeightMatrix wv; // [nKvHeads * headDim, hidden]
    private final WeightMatrix wo; // [hidden, nHeads * headDim]
    private final float[] qNorm;   // [headDim] or null
    private final float[] kNorm;   // [headDim] or null
    private final int nHeads;
    private final int nKvHeads;
    private final int headDim;
    private final float normEps;
    private final float scale;
    private final Rope rope;

    public AttentionBlock(WeightMatrix wq, WeightMatrix wk, WeightMatrix wv, WeightMatrix wo, float[] qNorm, float[] kNorm,
                          int nHeads, int nKvHeads, int headDim, float normEps, Rope rope) {
        this.wq = wq;
        this.wk = wk;
        this.wv = wv;
        this.wo = wo;
        this.qNorm = qNorm;
        this.kNorm = kNorm;
        this.nHeads = nHeads;
        this.nKvHeads = nKvHeads;
        this.headDim = headDim;
        this.normEps = normEps;
        this.scale = (float) (1.0 / Math.sqrt(headDim));
        this.rope = rope;
    }

    /** Scratch for {@code n} tokens. */
    public static final class Scratch {
        float[] q = new float[0], k = new float[0], v = new float[0], context = new float[0];
        float[][] scores = new float[0][];

        public void ensure(int nTokens, int qDim, int kvDim, int threads, int positions) {
            if (q.length < nTokens * qDim) {
                q = new float[nTokens * qDim];
                context = new float[nTokens * qDim];
            }
            if (k.length < nTokens * kvDim) {
                k = new float[nTokens * kvDim];
                v = new float[nTokens * kvDim];
            }
            if (scores.length < threads || scores[0].length < positions) {
                scores = new float[threads][positions];
            }
        }
    }

    /** Grows the shared RoPE tables to cover positions {@code [0, n)}; call before a parallel forward. */
    public void ensureRope(int n) {
        rope.ensurePositions(n);
    }

    public int qDim() {
        return nHeads * headDim;
    }

    public int kvDim() {
        return nKvHeads * headDim;
    }

    /**
     * {@code out[t] = o_proj(attention(x[t]))} for {@code n} tokens at positions {@code start ..}; writes
     * their keys and values into {@code cache} at {@code layer}. {@code x} is the normed hidden state.
     */
    public void forward(Compute c, int layer, float[] x, int n, int start, KvCache cache, Scratch s, float[] out) {
        int qDim = qDim(), kvDim = kvDim();
        s.ensure(n, qDim, kvDim, c.pool().threads(), start + n);
        Kernels kn = c.kernels();
        // qkv
        c.matmul3(x, n, wq, s.q, wk, s.k, wv, s.v);
        // q/k norm (per head) and RoPE, token by token
        c.pool().forRange(n, (worker, t0, t1) -> {
            for (int t = t0; t < t1; t++) {
                int pos = start + t;
                for (int h = 0; h < nHeads; h++) {
                    int off = t * qDim + h * headDim;
                    if (qNorm != null) {
                        kn.rmsNorm(s.q, off, qNorm, normEps, s.q, off, headDim);
                    }
                    rope.apply(s.q, off, pos);
                }
                for (int h = 0; h < nKvHeads; h++) {
                    int off = t * kvDim + h * headDim;
                    if (kNorm != null) {
                        kn.rmsNorm(s.k, off, kNorm, normEps, s.k, off, headDim);
                    }
                    rope.apply(s.k, off, pos);
                }
            }
        });
        // append K, V to the cache
        for (int t = 0; t < n; t++) {
            int pos = start + t;
            MemorySegment.copy(s.k, t * kvDim, cache.keySegment(layer, pos), ValueLayout.JAVA_FLOAT,
                    cache.keyOffsetBytes(layer, pos), kvDim);
            MemorySegment.copy(s.v, t * kvDim, cache.valueSegment(layer, pos), ValueLayout.JAVA_FLOAT,
                    cache.valueOffsetBytes(layer, pos), kvDim);
        }
        // causal attention, one (token, head) pair per work item
        int group = nHeads / nKvHeads;
        c.pool().forRange(n * nHeads, (worker, i0, i1) -> {
            float[] scores = s.scores[worker];
            for (int item = i0; item < i1; item++) {
                int t = item / nHeads, h = item % nHeads;
                int qOff = t * qDim + h * headDim;
                long headBytes = (long) (h / group) * headDim * Float.BYTES;
                int len = start + t + 1;
                for (int j = 0; j < len; j++) {
                    scores[j] = kn.dot(s.q, qOff, cache.keySegment(layer, j), cache.keyOffsetBytes(layer, j) + headBytes, headDim) * scale;
                }
                Softmax.inPlace(scores, 0, len);
                java.util.Arrays.fill(s.context, qOff, qOff + headDim, 0f);
                for (int j = 0; j < len; j++) {
                    kn.axpy(scores[j], cache.valueSegment(layer, j), cache.valueOffsetBytes(layer, j) + headBytes, s.context, qOff, headDim);
                }
            }
        });
        // o_proj
        c.matmul(wo, s.context, n, out);
    }
}
