package dev.lockstep.moe.block;

import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.KvBlockDescriptor;
import dev.lockstep.moe.ForwardBatch;
import dev.lockstep.moe.kv.KvCache;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Grouped-query causal self-attention over a {@link KvCache}, parameterized by what the families differ in
 * ({@link Spec}): the score scale, optional q/k/v/o biases, RMSNorm of q and k per head (Qwen3) or over the whole
 * projection (OLMoE), a sliding window, attention sinks (gpt-oss), and the RoPE tables (default or YaRN).
 * References: HF {@code Qwen3MoeAttention}, {@code OlmoeAttention}, {@code GptOssAttention}.
 *
 * <p>Operation order per token: q/k/v projections (+ bias), q/k norm, RoPE, K/V appended to the cache, scores
 * {@code (q . k) * scale} over the positions the window keeps, softmax (with the sink's logit in the denominator
 * when the layer has sinks), values, o projection (+ bias).
 */
public final class AttentionBlock implements Mixer {
    /** How q and k are normalized before RoPE. */
    public enum QkNorm {
        /** No normalization. */
        NONE,
        /** RMSNorm of each head's {@code headDim} values with one shared weight (Qwen3's q_norm/k_norm). */
        PER_HEAD,
        /** RMSNorm over the whole projection ({@code nHeads * headDim} for q), one weight per element (OLMoE). */
        WHOLE
    }

    /**
     * The shape and choices of one attention layer: heads, kv heads, head size, the score scale, the q/k norm and
     * its epsilon, and the sliding window in positions (0 = full causal attention).
     */
    public record Spec(int nHeads, int nKvHeads, int headDim, float scale, QkNorm qkNorm, float normEps, int window) {
        public Spec {
            if (nHeads <= 0 || nKvHeads <= 0 || nHeads % nKvHeads != 0 || headDim <= 0 || window < 0) {
                throw new IllegalArgumentException("bad attention shape: " + nHeads + " heads, " + nKvHeads + " kv heads, head dim "
                        + headDim + ", window " + window);
            }
        }

        /** The usual scale {@code 1/sqrt(headDim)}. */
        public static float defaultScale(int headDim) {
            return (float) (1.0 / Math.sqrt(headDim));
        }
    }

    /**
     * The tensors of one attention layer. Biases, norms and sinks are null when the family has none; q/k norm
     * weights are {@code [headDim]} per head or {@code [nHeads*headDim]}/{@code [nKvHeads*headDim]} whole.
     */
    public record Weights(WeightMatrix q, WeightMatrix k, WeightMatrix v, WeightMatrix o,
                          float[] qBias, float[] kBias, float[] vBias, float[] oBias,
                          float[] qNorm, float[] kNorm, float[] sinks) {
    }

    private final WeightMatrix wq; // [nHeads * headDim, hidden]
    private final WeightMatrix wk; // [nKvHeads * headDim, hidden]
    private final WeightMatrix wv; // [nKvHeads * headDim, hidden]
    private final WeightMatrix wo; // [hidden, nHeads * headDim]

    @Override
    public dev.lockstep.memory.KvLayout.Layer kvLayer() {
        return dev.lockstep.memory.KvLayout.Layer.gqa(nKvHeads, headDim);
    }

    /** Weight bytes one token's forward streams through this block (q, k, v, o). */
    @Override
    public long weightBytesPerToken() {
        return wq.byteSize() + wk.byteSize() + wv.byteSize() + wo.byteSize();
    }
    private final float[] qBias, kBias, vBias, oBias; // or null
    private final float[] qNorm;   // [headDim] (per head), [qDim] (whole) or null
    private final float[] kNorm;   // [headDim] (per head), [kvDim] (whole) or null
    private final float[] sinks;   // [nHeads] or null
    private final QkNorm qkNorm;
    private final int nHeads;
    private final int nKvHeads;
    private final int headDim;
    private final float normEps;
    private final float scale;
    private final int window;
    private final Rope rope;

    public AttentionBlock(Weights w, Spec spec, Rope rope) {
        this.wq = w.q();
        this.wk = w.k();
        this.wv = w.v();
        this.wo = w.o();
        this.qBias = w.qBias();
        this.kBias = w.kBias();
        this.vBias = w.vBias();
        this.oBias = w.oBias();
        this.qNorm = w.qNorm();
        this.kNorm = w.kNorm();
        this.sinks = w.sinks();
        this.qkNorm = spec.qkNorm();
        if ((qkNorm == QkNorm.NONE) != (qNorm == null && kNorm == null)) {
            throw new IllegalArgumentException("q/k norm " + qkNorm + " with" + (qNorm == null ? "out" : "") + " norm weights");
        }
        this.nHeads = spec.nHeads();
        this.nKvHeads = spec.nKvHeads();
        this.headDim = spec.headDim();
        this.normEps = spec.normEps();
        this.scale = spec.scale();
        this.window = spec.window();
        this.rope = rope;
    }

    /** Qwen3's attention: per-head q/k norm, no biases, full causal, scale {@code 1/sqrt(headDim)}. */
    public AttentionBlock(WeightMatrix wq, WeightMatrix wk, WeightMatrix wv, WeightMatrix wo, float[] qNorm, float[] kNorm,
                          int nHeads, int nKvHeads, int headDim, float normEps, Rope rope) {
        this(new Weights(wq, wk, wv, wo, null, null, null, null, qNorm, kNorm, null),
                new Spec(nHeads, nKvHeads, headDim, Spec.defaultScale(headDim), qNorm == null ? QkNorm.NONE : QkNorm.PER_HEAD, normEps, 0),
                rope);
    }

    /** The sliding window in positions, 0 for full attention. */
    public int window() {
        return window;
    }

    /** Scratch for {@code n} tokens. */
    public static final class Scratch {
        float[] q = new float[0], k = new float[0], v = new float[0], context = new float[0];
        float[][] scores = new float[0][];
        /** Per worker: the key block (segment, offset) of each block of the context being attended. */
        MemorySegment[][] keyBlocks = new MemorySegment[0][];
        long[][] keyOffsetsBytes = new long[0][];
        final Call call = new Call();

        public void ensure(int nTokens, int qDim, int kvDim, int threads, int group, int positions) {
            int blocks = KvBlockDescriptor.blocksFor(positions);
            positions = group * blocks * KvBlockDescriptor.BLOCK_TOKENS;
            if (q.length < nTokens * qDim) {
                q = new float[nTokens * qDim + Compute.OUTPUT_PAD];
                context = new float[nTokens * qDim + Compute.OUTPUT_PAD];
            }
            if (k.length < nTokens * kvDim) {
                k = new float[nTokens * kvDim + Compute.OUTPUT_PAD];
                v = new float[nTokens * kvDim + Compute.OUTPUT_PAD];
            }
            if (scores.length < threads || scores[0].length < positions) {
                scores = new float[threads][positions];
            }
            if (keyBlocks.length < threads || keyBlocks[0].length < blocks) {
                keyBlocks = new MemorySegment[threads][blocks];
                keyOffsetsBytes = new long[threads][blocks];
            }
        }
    }

    /** Grows the shared RoPE tables to cover positions {@code [0, n)}; call before a parallel forward. */
    @Override
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
     * {@code out[t] = o_proj(attention(x[t]))} for the tokens of {@code batch}, each at its position in its own
     * sequence; writes their keys and values into their caches at {@code layer} (reserved by the caller).
     * {@code x} is the normed hidden state. Each token attends to positions {@code [0, position]} of its own
     * sequence, so its result does not depend on the other tokens of the batch.
     */
    public void forward(Compute c, int layer, float[] x, ForwardBatch batch, Scratch s, float[] out) {
        int n = batch.size();
        int qDim = qDim(), kvDim = kvDim();
        s.ensure(n, qDim, kvDim, c.workers(), nHeads / nKvHeads, batch.maxPosition() + 1);
        if (c.workers() > 1 && nKvHeads % c.workers() == 0 && headDim % wq.tileRows() == 0 && headDim % wk.tileRows() == 0
                && headDim % wv.tileRows() == 0 && qkNorm != QkNorm.WHOLE) {
            // one region, split by kv head: each worker projects its heads' q, k, v rows, norms and rotates them,
            // appends its head's K and V and attends over it; one barrier where the steps below take two
            Call call = s.call.set(this, c.kernels(), layer, batch, s);
            call.x = x;
            c.forRange("attention.by_head", nKvHeads, call.phase(Call.BY_HEAD));
            call.clear();
            c.matmul(wo, s.context, n, out);
            addBias(out, n, oBias);
            return;
        }
        // qkv
        c.matmul3(x, n, wq, s.q, wk, s.k, wv, s.v);
        Call call = s.call.set(this, c.kernels(), layer, batch, s);
        // biases, q/k norm and RoPE, token by token
        c.forRange("attention.norm_rope", n, call.phase(Call.NORM_ROPE));
        // append K, V to the caches: keys transposed inside their block, values by position
        for (int t = 0; t < n; t++) {
            int pos = batch.position(t);
            KvCache cache = batch.cache(t);
            int block = KvBlockDescriptor.blockOf(pos), slot = KvBlockDescriptor.slotOf(pos);
            MemorySegment keys = cache.keyBlock(layer, block);
            long keyBase = cache.keyBlockOffsetBytes(layer, block);
            for (int h = 0; h < nKvHeads; h++) {
                for (int d = 0; d < headDim; d++) {
                    keys.set(ValueLayout.JAVA_FLOAT, keyBase + KvBlockDescriptor.keyOffsetBytes(headDim, h, d, slot), s.k[t * kvDim + h * headDim + d]);
                }
            }
            MemorySegment.copy(s.v, t * kvDim, cache.valueBlock(layer, block), ValueLayout.JAVA_FLOAT,
                    cache.valueBlockOffsetBytes(layer, block) + KvBlockDescriptor.valueOffsetBytes(nKvHeads, headDim, slot, 0, 0), kvDim);
        }
        // causal attention, one (token, kv head) pair per work item
        c.forRange("attention.attend", n * nKvHeads, call.phase(Call.ATTEND));
        call.clear();
        // o_proj
        c.matmul(wo, s.context, n, out);
        addBias(out, n, oBias);
    }

    /** {@code y[t] += bias} for {@code n} rows of {@code bias.length} (nothing when there is no bias). */
    private static void addBias(float[] y, int n, float[] bias) {
        if (bias != null) {
            for (int t = 0; t < n; t++) {
                addBias(y, t * bias.length, bias, 0, bias.length);
            }
        }
    }

    /** {@code y[off + i] += bias[from + i]} for {@code i < len} (nothing when there is no bias). */
    private static void addBias(float[] y, int off, float[] bias, int from, int len) {
        if (bias != null) {
            for (int i = 0; i < len; i++) {
                y[off + i] += bias[from + i];
            }
        }
    }

    /**
     * The arguments of one forward's parallel regions, reused from call to call so a decode step allocates
     * nothing (a capturing lambda per region would).
     */
    static final class Call extends PhasedTask {
        static final int NORM_ROPE = 0;
        static final int ATTEND = 1;
        static final int BY_HEAD = 2;

        private AttentionBlock block;
        private Kernels kernels;
        private ForwardBatch batch;
        private Scratch scratch;
        private int layer;
        float[] x;

        Call set(AttentionBlock block, Kernels kernels, int layer, ForwardBatch batch, Scratch scratch) {
            this.block = block;
            this.kernels = kernels;
            this.layer = layer;
            this.batch = batch;
            this.scratch = scratch;
            return this;
        }

        @Override
        void clear() {
            block = null;
            batch = null;
            scratch = null;
            x = null;
        }

        @Override
        void run(int phase, int worker, int start, int end) {
            switch (phase) {
                case NORM_ROPE -> block.normAndRope(this, start, end);
                case ATTEND -> block.attend(this, worker, start, end);
                default -> block.byHead(this, worker, start, end);
            }
        }
    }

    /**
     * KV heads {@code [h0, h1)} from the normed hidden state to the attention context: their q, k, v rows (whole
     * tiles: a head's rows are a multiple of the tile height), q/k norm and RoPE, their slice of every token's K and
     * V appended to the caches, then attention over them. Each value is computed as the split steps compute it.
     */
    private void byHead(Call call, int worker, int h0, int h1) {
        Scratch s = call.scratch;
        Kernels kn = call.kernels;
        ForwardBatch batch = call.batch;
        int n = batch.size(), layer = call.layer;
        int qDim = qDim(), kvDim = kvDim(), group = nHeads / nKvHeads, hidden = wq.cols();
        for (int h = h0; h < h1; h++) {
            kn.matmul(wq, call.x, 0, hidden, n, s.q, 0, qDim, h * group * headDim, (h + 1) * group * headDim);
            kn.matmul(wk, call.x, 0, hidden, n, s.k, 0, kvDim, h * headDim, (h + 1) * headDim);
            kn.matmul(wv, call.x, 0, hidden, n, s.v, 0, kvDim, h * headDim, (h + 1) * headDim);
            for (int t = 0; t < n; t++) {
                int pos = batch.position(t);
                addBias(s.q, t * qDim + h * group * headDim, qBias, h * group * headDim, group * headDim);
                addBias(s.k, t * kvDim + h * headDim, kBias, h * headDim, headDim);
                addBias(s.v, t * kvDim + h * headDim, vBias, h * headDim, headDim);
                for (int g = 0; g < group; g++) {
                    int off = t * qDim + (h * group + g) * headDim;
                    if (qNorm != null) {
                        kn.rmsNorm(s.q, off, qNorm, normEps, s.q, off, headDim);
                    }
                    rope.apply(s.q, off, pos);
                }
                int off = t * kvDim + h * headDim;
                if (kNorm != null) {
                    kn.rmsNorm(s.k, off, kNorm, normEps, s.k, off, headDim);
                }
                rope.apply(s.k, off, pos);
                KvCache cache = batch.cache(t);
                int block = KvBlockDescriptor.blockOf(pos), slot = KvBlockDescriptor.slotOf(pos);
                MemorySegment keys = cache.keyBlock(layer, block);
                long keyBase = cache.keyBlockOffsetBytes(layer, block);
                for (int d = 0; d < headDim; d++) {
                    keys.set(ValueLayout.JAVA_FLOAT, keyBase + KvBlockDescriptor.keyOffsetBytes(headDim, h, d, slot), s.k[off + d]);
                }
                MemorySegment.copy(s.v, off, cache.valueBlock(layer, block), ValueLayout.JAVA_FLOAT,
                        cache.valueBlockOffsetBytes(layer, block) + KvBlockDescriptor.valueOffsetBytes(nKvHeads, headDim, slot, h, 0), headDim);
            }
            for (int j = 0; j < n; j++) {
                attend(call, worker, j * nKvHeads + h, j * nKvHeads + h + 1);
            }
        }
    }

    private void normAndRope(Call call, int t0, int t1) {
        Scratch s = call.scratch;
        Kernels kn = call.kernels;
        int qDim = qDim(), kvDim = kvDim();
        for (int t = t0; t < t1; t++) {
            int pos = call.batch.position(t);
            addBias(s.q, t * qDim, qBias, 0, qDim);
            addBias(s.k, t * kvDim, kBias, 0, kvDim);
            addBias(s.v, t * kvDim, vBias, 0, kvDim);
            if (qkNorm == QkNorm.WHOLE) {
                kn.rmsNorm(s.q, t * qDim, qNorm, normEps, s.q, t * qDim, qDim);
                kn.rmsNorm(s.k, t * kvDim, kNorm, normEps, s.k, t * kvDim, kvDim);
            }
            for (int h = 0; h < nHeads; h++) {
                int off = t * qDim + h * headDim;
                if (qkNorm == QkNorm.PER_HEAD) {
                    kn.rmsNorm(s.q, off, qNorm, normEps, s.q, off, headDim);
                }
                rope.apply(s.q, off, pos);
            }
            for (int h = 0; h < nKvHeads; h++) {
                int off = t * kvDim + h * headDim;
                if (qkNorm == QkNorm.PER_HEAD) {
                    kn.rmsNorm(s.k, off, kNorm, normEps, s.k, off, headDim);
                }
                rope.apply(s.k, off, pos);
            }
        }
    }

    /**
     * Items {@code [i0, i1)} of {@code n * kvHeads} (token, kv head) pairs; the group's query heads share each
     * K/V load. Tokens are visited zig-zag (0, n-1, 1, n-2, ...) so that contiguous chunks get equal causal
     * work: a plain split would give the last worker the longest contexts.
     */
    private void attend(Call call, int worker, int i0, int i1) {
        Scratch s = call.scratch;
        Kernels kn = call.kernels;
        ForwardBatch batch = call.batch;
        int layer = call.layer, n = batch.size();
        int qDim = qDim(), kvDim = kvDim();
        int group = nHeads / nKvHeads;
        long valueRowBytes = (long) kvDim * Float.BYTES;
        float[] scores = s.scores[worker];
        for (int item = i0; item < i1; item++) {
            int j = item / nKvHeads, kvh = item % nKvHeads;
            int t = (j & 1) == 0 ? j >> 1 : n - 1 - (j >> 1);
            KvCache cache = batch.cache(t);
            int len = batch.position(t) + 1;
            // a sliding window keeps positions [len - window, len): blocks before the window's first are not read,
            // and the first block's positions before the window get probability 0
            int start = window > 0 ? Math.max(0, len - window) : 0;
            int b0 = KvBlockDescriptor.blockOf(start);
            int skip = start - b0 * KvBlockDescriptor.BLOCK_TOKENS, end = len - b0 * KvBlockDescriptor.BLOCK_TOKENS;
            int blocks = KvBlockDescriptor.blocksFor(len) - b0;
            int stride = blocks * KvBlockDescriptor.BLOCK_TOKENS;
            int qOff = t * qDim + kvh * group * headDim;
            long keyHead = KvBlockDescriptor.keyHeadOffsetBytes(headDim, kvh);
            long valueHead = KvBlockDescriptor.valueOffsetBytes(nKvHeads, headDim, 0, kvh, 0);
            MemorySegment[] keys = s.keyBlocks[worker];
            long[] keyOffsets = s.keyOffsetsBytes[worker];
            for (int b = 0; b < blocks; b++) {
                keys[b] = cache.keyBlock(layer, b0 + b);
                keyOffsets[b] = cache.keyBlockOffsetBytes(layer, b0 + b) + keyHead;
            }
            kn.attentionScores(s.q, qOff, group, headDim, keys, keyOffsets, blocks, scores, 0, stride);
            for (int g = 0; g < group; g++) {
                int o = g * stride;
                for (int k = skip; k < end; k++) {
                    scores[o + k] *= scale;
                }
                if (sinks != null) {
                    softmaxWithSink(scores, o + skip, end - skip, sinks[kvh * group + g]);
                } else {
                    kn.softmax(scores, o + skip, end - skip);
                }
                java.util.Arrays.fill(scores, o, o + skip, 0f);
            }
            java.util.Arrays.fill(s.context, qOff, qOff + group * headDim, 0f);
            for (int b = 0; b < blocks; b++) {
                int slots = Math.min(KvBlockDescriptor.BLOCK_TOKENS, end - b * KvBlockDescriptor.BLOCK_TOKENS);
                kn.attentionValues(scores, b * KvBlockDescriptor.BLOCK_TOKENS, stride, group, slots, cache.valueBlock(layer, b0 + b),
                        cache.valueBlockOffsetBytes(layer, b0 + b) + valueHead, valueRowBytes, s.context, qOff, headDim);
            }
        }
    }

    /**
     * Softmax of {@code x[off .. off+n)} with one more logit, the sink, in the denominator only (HF gpt-oss: the
     * sink joins the logits, the max is taken over all, and its probability is dropped). In place; ascending order.
     */
    static void softmaxWithSink(float[] x, int off, int n, float sink) {
        float max = sink;
        for (int i = 0; i < n; i++) {
            max = Math.max(max, x[off + i]);
        }
        float sum = 0f;
        for (int i = 0; i < n; i++) {
            float e = (float) Math.exp(x[off + i] - max);
            x[off + i] = e;
            sum += e;
        }
        sum += (float) Math.exp(sink - max);
        float inv = 1f / sum;
        for (int i = 0; i < n; i++) {
            x[off + i] *= inv;
        }
    }
}
