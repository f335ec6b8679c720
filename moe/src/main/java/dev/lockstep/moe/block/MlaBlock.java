package dev.lockstep.moe.block;

import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.KvBlockDescriptor;
import dev.lockstep.memory.KvLayout;
import dev.lockstep.moe.ForwardBatch;
import dev.lockstep.moe.kv.KvCache;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * DeepSeek's multi-head latent attention (HF {@code DeepseekV3Attention}), computed in the latent space with the
 * up-projections absorbed, as DeepSeek's and llama.cpp's MLA paths do: the cache keeps, per position, only the
 * normed compressed KV {@code c} ({@code kv_lora_rank}) and the decoupled RoPE key {@code r}
 * ({@code qk_rope_head_dim}), shared by every head ({@link KvLayout.Layer#latent}): {@code [c | r]} as the one key
 * head (transposed in its block, for the scores kernel) and {@code c} again as the one value head (by position, for
 * the values kernel). Storing {@code c} twice lets both go through the attention kernels, whose lane-wise order makes
 * them bit-identical at every vector width; a single copy would need a horizontal sum per dot product, whose order
 * depends on the width.
 *
 * <p>Per token: {@code q = q_b(norm(q_a x))} (or {@code q_proj x}), split per head into {@code q_nope} and
 * {@code q_rot}; {@code [c_raw | r] = kv_a x}, {@code c = norm(c_raw)}; RoPE on {@code q_rot} and {@code r} (pairs
 * de-interleaved first when {@code rope_interleave}). Head {@code h} attends with the absorbed query
 * {@code q_lat = W_kb[h]^T q_nope}: {@code score_j = (q_lat . c_j + q_rot . r_j) * scale} (equal to HF's
 * {@code q . k_j} with {@code k_nope_j = W_kb[h] c_j}), softmax, the latent context {@code sum_j p_j c_j}, and the
 * head's output {@code W_vb[h] context} (equal to {@code sum_j p_j v_j}); then {@code o_proj}. The two absorbed
 * matrices are {@code kv_b_proj}'s rows rearranged at load (the same values): {@code kAbsorbed [heads*rank, nope]}
 * (head h's k rows transposed) and {@code vUp [heads*v, rank]}.
 */
public final class MlaBlock implements Mixer {
    /** Shapes and choices: heads, LoRA ranks (qLoraRank 0 = a plain q_proj), head parts, score scale, norm epsilon, interleaved RoPE. */
    public record Spec(int nHeads, int qLoraRank, int kvLoraRank, int nopeDim, int ropeDim, int vDim, float scale, float normEps,
                       boolean ropeInterleave) {
        public int qkDim() {
            return nopeDim + ropeDim;
        }

        public int latentDim() {
            return kvLoraRank + ropeDim;
        }
    }

    /** The tensors; {@code qA}/{@code qANorm} are null without a q LoRA ({@code qB} is then {@code q_proj}). */
    public record Weights(WeightMatrix qA, float[] qANorm, WeightMatrix qB, WeightMatrix kvA, float[] kvANorm,
                          WeightMatrix kAbsorbed, WeightMatrix vUp, WeightMatrix o) {
    }

    private final Weights w;
    private final Spec spec;
    private final Rope rope;

    public MlaBlock(Weights w, Spec spec, Rope rope) {
        this.w = w;
        this.spec = spec;
        this.rope = rope;
    }

    @Override
    public KvLayout.Layer kvLayer() {
        return KvLayout.Layer.latent(spec.kvLoraRank(), spec.ropeDim());
    }

    @Override
    public void ensureRope(int n) {
        rope.ensurePositions(n);
    }

    @Override
    public long weightBytesPerToken() {
        return (w.qA() == null ? 0 : w.qA().byteSize()) + w.qB().byteSize() + w.kvA().byteSize() + w.kAbsorbed().byteSize()
                + w.vUp().byteSize() + w.o().byteSize();
    }

    /** Scratch for {@code n} tokens. */
    public static final class Scratch {
        float[] qa = new float[0], q = new float[0], ckv = new float[0], qLat = new float[0], ctxLat = new float[0], context = new float[0];
        float[] rot = new float[0];
        float[][] scores = new float[0][];
        MemorySegment[][] keyBlocks = new MemorySegment[0][];
        long[][] keyOffsetsBytes = new long[0][];
        final Call call = new Call();

        void ensure(int n, Spec s, int threads, int positions) {
            int heads = s.nHeads();
            if (q.length < n * heads * s.qkDim()) {
                q = new float[n * heads * s.qkDim() + Compute.OUTPUT_PAD];
                qa = new float[n * Math.max(1, s.qLoraRank()) + Compute.OUTPUT_PAD];
                ckv = new float[n * s.latentDim() + Compute.OUTPUT_PAD];
                qLat = new float[n * heads * s.latentDim() + Compute.OUTPUT_PAD];
                ctxLat = new float[n * heads * s.kvLoraRank()];
                context = new float[n * heads * s.vDim() + Compute.OUTPUT_PAD];
                rot = new float[s.ropeDim()];
            }
            int stride = KvBlockDescriptor.blocksFor(positions) * KvBlockDescriptor.BLOCK_TOKENS;
            if (scores.length < threads || scores[0].length < heads * stride) {
                scores = new float[threads][heads * stride];
            }
            int blocks = KvBlockDescriptor.blocksFor(positions);
            if (keyBlocks.length < threads || keyBlocks[0].length < blocks) {
                keyBlocks = new MemorySegment[threads][blocks];
                keyOffsetsBytes = new long[threads][blocks];
            }
        }
    }

    /** The arguments of one forward's parallel region, reused so a step allocates nothing. */
    static final class Call extends PhasedTask {
        private MlaBlock block;
        private Kernels kernels;
        private ForwardBatch batch;
        private Scratch scratch;
        private int layer;
        int parts;

        Call set(MlaBlock block, Kernels kernels, int layer, ForwardBatch batch, Scratch scratch) {
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
        }

        @Override
        void run(int phase, int worker, int start, int end) {
            block.attend(this, worker, start, end);
        }
    }

    /**
     * {@code out[t] = o_proj(attention(x[t]))} for the tokens of {@code batch}, appending each token's latent row to
     * its cache at {@code layer} (reserved by the caller); each token attends to positions {@code [0, position]} of its
     * own sequence.
     */
    public void forward(Compute c, int layer, float[] x, ForwardBatch batch, Scratch s, float[] out) {
        int n = batch.size(), heads = spec.nHeads(), rank = spec.kvLoraRank(), qk = spec.qkDim(), lat = spec.latentDim();
        s.ensure(n, spec, c.workers(), batch.maxPosition() + 1);
        Kernels kn = c.kernels();
        if (w.qA() != null) {
            c.matmul(w.qA(), x, n, s.qa);
            for (int t = 0; t < n; t++) {
                kn.rmsNorm(s.qa, t * spec.qLoraRank(), w.qANorm(), spec.normEps(), s.qa, t * spec.qLoraRank(), spec.qLoraRank());
            }
            c.matmul(w.qB(), s.qa, n, s.q);
        } else {
            c.matmul(w.qB(), x, n, s.q);
        }
        c.matmul(w.kvA(), x, n, s.ckv);
        for (int t = 0; t < n; t++) {
            int pos = batch.position(t);
            // the latent row: normed c, then the roped decoupled key
            kn.rmsNorm(s.ckv, t * lat, w.kvANorm(), spec.normEps(), s.ckv, t * lat, rank);
            rotate(s.ckv, t * lat + rank, pos, s.rot);
            KvCache cache = batch.cache(t);
            int block = KvBlockDescriptor.blockOf(pos), slot = KvBlockDescriptor.slotOf(pos);
            MemorySegment keys = cache.keyBlock(layer, block);
            long keyBase = cache.keyBlockOffsetBytes(layer, block);
            for (int d = 0; d < lat; d++) {
                keys.set(ValueLayout.JAVA_FLOAT, keyBase + KvBlockDescriptor.keyOffsetBytes(lat, 0, d, slot), s.ckv[t * lat + d]);
            }
            MemorySegment.copy(s.ckv, t * lat, cache.valueBlock(layer, block), ValueLayout.JAVA_FLOAT,
                    cache.valueBlockOffsetBytes(layer, block) + KvBlockDescriptor.valueOffsetBytes(1, rank, slot, 0, 0), rank);
            for (int h = 0; h < heads; h++) {
                int qo = (t * heads + h) * qk, lo = (t * heads + h) * lat;
                rotate(s.q, qo + spec.nopeDim(), pos, s.rot);
                // the latent query [W_kb[h]^T q_nope | q_rot]: rows [h*rank, (h+1)*rank) of kAbsorbed times q_nope of head h
                kn.matmul(w.kAbsorbed(), s.q, qo, qk, 1, s.qLat, lo - h * rank, 0, h * rank, (h + 1) * rank);
                System.arraycopy(s.q, qo + spec.nopeDim(), s.qLat, lo + rank, spec.ropeDim());
            }
        }
        // (token, head range) items, one head range per worker: each head's scores and context are computed alike
        // whatever range it is in (the kernels are per head), so the split changes no bit, and each worker reads the
        // latent rows once for its heads
        Call call = s.call.set(this, kn, layer, batch, s);
        call.parts = Math.min(heads, c.workers());
        c.forRange("mla.attend", n * call.parts, call);
        call.clear();
        for (int t = 0; t < n; t++) {
            for (int h = 0; h < heads; h++) {
                kn.matmul(w.vUp(), s.ctxLat, (t * heads + h) * rank, rank, 1, s.context, t * heads * spec.vDim(), 0,
                        h * spec.vDim(), (h + 1) * spec.vDim());
            }
        }
        c.matmul(w.o(), s.context, n, out);
    }

    /** RoPE on {@code ropeDim} values at {@code off}, de-interleaving the pairs first when the config says so. */
    private void rotate(float[] v, int off, int pos, float[] tmp) {
        int d = spec.ropeDim();
        if (spec.ropeInterleave()) {
            for (int i = 0; i < d / 2; i++) {
                tmp[i] = v[off + 2 * i];
                tmp[d / 2 + i] = v[off + 2 * i + 1];
            }
            System.arraycopy(tmp, 0, v, off, d);
        }
        rope.apply(v, off, pos);
    }

    /**
     * Items {@code [i0, i1)} of (token, head range): the range's heads' scores against the latent keys (the heads
     * share the one key head: a query group, as grouped-query attention's kernel computes it), scaled, softmax, and
     * their latent context from the value rows.
     */
    private void attend(Call call, int worker, int i0, int i1) {
        Scratch s = call.scratch;
        Kernels kn = call.kernels;
        ForwardBatch batch = call.batch;
        int heads = spec.nHeads(), rank = spec.kvLoraRank(), lat = spec.latentDim();
        float[] scores = s.scores[worker];
        MemorySegment[] keys = s.keyBlocks[worker];
        long[] keyOffsets = s.keyOffsetsBytes[worker];
        long rowBytes = (long) rank * Float.BYTES;
        for (int item = i0; item < i1; item++) {
            int t = item / call.parts, part = item % call.parts;
            int h0 = heads * part / call.parts, h1 = heads * (part + 1) / call.parts, g = h1 - h0;
            KvCache cache = batch.cache(t);
            int len = batch.position(t) + 1;
            int blocks = KvBlockDescriptor.blocksFor(len), stride = blocks * KvBlockDescriptor.BLOCK_TOKENS;
            for (int b = 0; b < blocks; b++) {
                keys[b] = cache.keyBlock(call.layer, b);
                keyOffsets[b] = cache.keyBlockOffsetBytes(call.layer, b);
            }
            kn.attentionScores(s.qLat, (t * heads + h0) * lat, g, lat, keys, keyOffsets, blocks, scores, 0, stride);
            for (int h = 0; h < g; h++) {
                int o = h * stride;
                for (int k = 0; k < len; k++) {
                    scores[o + k] *= spec.scale();
                }
                kn.softmax(scores, o, len);
            }
            int co = (t * heads + h0) * rank;
            Arrays.fill(s.ctxLat, co, co + g * rank, 0f);
            for (int b = 0; b < blocks; b++) {
                int slots = Math.min(KvBlockDescriptor.BLOCK_TOKENS, len - b * KvBlockDescriptor.BLOCK_TOKENS);
                kn.attentionValues(scores, b * KvBlockDescriptor.BLOCK_TOKENS, stride, g, slots, cache.valueBlock(call.layer, b),
                        cache.valueBlockOffsetBytes(call.layer, b), rowBytes, s.ctxLat, co, rank);
            }
        }
    }
}
