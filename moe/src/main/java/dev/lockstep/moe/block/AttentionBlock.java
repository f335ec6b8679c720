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
 * Grouped-query causal self-attention over a {@link KvCache}, with optional per-head RMSNorm of q and k
 * (Qwen3's {@code q_norm}/{@code k_norm}) and rotate-half RoPE. Reference: HF {@code Qwen3MoeAttention}.
 */
public final class AttentionBlock {
    private final WeightMatrix wq; // [nHeads * headDim, hidden]
    private final WeightMatrix wk; // [nKvHeads * headDim, hidden]
    private final WeightMatrix wv; // [nKvHeads * headDim, hidden]
    private final WeightMatrix wo; // [hidden, nHeads * headDim]

    /** Weight bytes one token's forward streams through this block (q, k, v, o). */
    public long weightBytesPerToken() {
        return wq.byteSize() + wk.byteSize() + wv.byteSize() + wo.byteSize();
    }
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
        /** Per worker: the key block (segment, offset) of each block of the context being attended. */
        MemorySegment[][] keyBlocks = new MemorySegment[0][];
        long[][] keyOffsetsBytes = new long[0][];
        final Call call = new Call();

        public void ensure(int nTokens, int qDim, int kvDim, int threads, int group, int positions) {
            int blocks = KvBlockDescriptor.blocksFor(positions);
            positions = group * blocks * KvBlockDescriptor.BLOCK_TOKENS;
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
            if (keyBlocks.length < threads || keyBlocks[0].length < blocks) {
                keyBlocks = new MemorySegment[threads][blocks];
                keyOffsetsBytes = new long[threads][blocks];
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
                && headDim % wv.tileRows() == 0) {
            // one region, split by kv head: each worker projects its heads' q, k, v rows, norms and rotates them,
            // appends its head's K and V and attends over it; one barrier where the steps below take two
            Call call = s.call.set(this, c.kernels(), layer, batch, s);
            call.x = x;
            c.forRange("attention.by_head", nKvHeads, call.phase(Call.BY_HEAD));
            call.clear();
            c.matmul(wo, s.context, n, out);
            return;
        }
        // qkv
        c.matmul3(x, n, wq, s.q, wk, s.k, wv, s.v);
        Call call = s.call.set(this, c.kernels(), layer, batch, s);
        // q/k norm (per head) and RoPE, token by token
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
            int blocks = KvBlockDescriptor.blocksFor(len);
            int stride = blocks * KvBlockDescriptor.BLOCK_TOKENS;
            int qOff = t * qDim + kvh * group * headDim;
            long keyHead = KvBlockDescriptor.keyHeadOffsetBytes(headDim, kvh);
            long valueHead = KvBlockDescriptor.valueOffsetBytes(nKvHeads, headDim, 0, kvh, 0);
            MemorySegment[] keys = s.keyBlocks[worker];
            long[] keyOffsets = s.keyOffsetsBytes[worker];
            for (int b = 0; b < blocks; b++) {
                keys[b] = cache.keyBlock(layer, b);
                keyOffsets[b] = cache.keyBlockOffsetBytes(layer, b) + keyHead;
            }
            kn.attentionScores(s.q, qOff, group, headDim, keys, keyOffsets, blocks, scores, 0, stride);
            for (int g = 0; g < group; g++) {
                int o = g * stride;
                for (int k = 0; k < len; k++) {
                    scores[o + k] *= scale;
                }
                kn.softmax(scores, o, len);
            }
            java.util.Arrays.fill(s.context, qOff, qOff + group * headDim, 0f);
            for (int b = 0; b < blocks; b++) {
                int slots = Math.min(KvBlockDescriptor.BLOCK_TOKENS, len - b * KvBlockDescriptor.BLOCK_TOKENS);
                kn.attentionValues(scores, b * KvBlockDescriptor.BLOCK_TOKENS, stride, group, slots, cache.valueBlock(layer, b),
                        cache.valueBlockOffsetBytes(layer, b) + valueHead, valueRowBytes, s.context, qOff, headDim);
            }
        }
    }
}
