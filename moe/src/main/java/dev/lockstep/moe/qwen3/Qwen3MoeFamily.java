package dev.lockstep.moe.qwen3;

import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.Checkpoint;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.memory.TierPlacement;
import dev.lockstep.memory.TensorInfo;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.LoadOptions;
import dev.lockstep.moe.ModelConfigJson;
import dev.lockstep.moe.ModelFamily;
import dev.lockstep.moe.ModelSummary;
import dev.lockstep.moe.WeightLoader;
import dev.lockstep.moe.block.AttentionBlock;
import dev.lockstep.moe.block.Compute;
import dev.lockstep.moe.block.DenseMlpBlock;
import dev.lockstep.moe.block.SparseMoeBlock;

import java.util.List;

/** {@code qwen3_moe}: HF {@code Qwen3MoeForCausalLM}. Tensor names as in the HF checkpoint. */
public final class Qwen3MoeFamily implements ModelFamily {
    public static final String MODEL_TYPE = "qwen3_moe";

    @Override
    public String modelType() {
        return MODEL_TYPE;
    }

    @Override
    public CausalLm load(ModelConfigJson json, Checkpoint checkpoint, Kernels kernels, WorkerPool pool, LoadOptions options) {
        Qwen3MoeConfig c = Qwen3MoeConfig.parse(json);
        TierPlacement weights = options.placement();
        try {
            return load(c, checkpoint, kernels, pool, weights, options);
        } catch (RuntimeException | Error e) {
            weights.close();
            throw e;
        }
    }

    private static CausalLm load(Qwen3MoeConfig c, Checkpoint checkpoint, Kernels kernels, WorkerPool pool, TierPlacement weights,
                                 LoadOptions options) {
        WeightLoader w = new WeightLoader(MODEL_TYPE, checkpoint, kernels.tileRows(), weights, options, kernels.name());
        int h = c.hiddenSize();
        Rope rope = new Rope(c.headDim(), c.ropeTheta(), Math.min(c.maxPositionEmbeddings(), 4096));

        WeightMatrix embedSource = w.rowMajor("model.embed_tokens.weight", c.vocabSize(), h);
        WeightMatrix embed = w.copied(embedSource);                                              // [vocab, hidden]
        Qwen3MoeModel.Layer[] layers = new Qwen3MoeModel.Layer[c.nLayers()];
        for (int l = 0; l < c.nLayers(); l++) {
            String p = "model.layers." + l + ".";
            float[] inputNorm = w.vector(p + "input_layernorm.weight", h);
            AttentionBlock attention = new AttentionBlock(
                    w.matrix(p + "self_attn.q_proj.weight", c.qDim(), h),
                    w.matrix(p + "self_attn.k_proj.weight", c.kvDim(), h),
                    w.matrix(p + "self_attn.v_proj.weight", c.kvDim(), h),
                    w.matrix(p + "self_attn.o_proj.weight", h, c.qDim()),
                    w.vector(p + "self_attn.q_norm.weight", c.headDim()),
                    w.vector(p + "self_attn.k_norm.weight", c.headDim()),
                    c.nHeads(), c.nKvHeads(), c.headDim(), c.rmsNormEps(), rope);
            float[] postNorm = w.vector(p + "post_attention_layernorm.weight", h);
            SparseMoeBlock moe = null;
            DenseMlpBlock mlp = null;
            if (c.isSparse(l)) {
                int e = c.nExperts(), i = c.moeIntermediateSize();
                WeightMatrix router = w.matrix(p + "mlp.gate.weight", e, h);                     // [experts, hidden]
                WeightMatrix[] gate = new WeightMatrix[e], up = new WeightMatrix[e], down = new WeightMatrix[e];
                for (int x = 0; x < e; x++) {
                    String ep = p + "mlp.experts." + x + ".";
                    gate[x] = w.matrix(ep + "gate_proj.weight", i, h);                           // [moe_inter, hidden]
                    up[x] = w.matrix(ep + "up_proj.weight", i, h);                               // [moe_inter, hidden]
                    down[x] = w.matrix(ep + "down_proj.weight", h, i);                           // [hidden, moe_inter]
                }
                moe = new SparseMoeBlock(router, gate, up, down, c.topK(), c.normTopKProb());
            } else {
                int i = c.intermediateSize();
                mlp = new DenseMlpBlock(w.matrix(p + "mlp.gate_proj.weight", i, h), w.matrix(p + "mlp.up_proj.weight", i, h),
                        w.matrix(p + "mlp.down_proj.weight", h, i));
            }
            layers[l] = new Qwen3MoeModel.Layer(inputNorm, attention, postNorm, moe, mlp);
        }
        float[] finalNorm = w.vector("model.norm.weight", h);
        WeightMatrix lmHead = c.tieWordEmbeddings() && !w.has("lm_head.weight")
                ? w.packed(embedSource)
                : w.matrix("lm_head.weight", c.vocabSize(), h);                                  // [vocab, hidden]
        w.finish();
        ModelSummary summary = summarize(c, w);
        return new Qwen3MoeModel(c, embed, layers, finalNorm, lmHead, new Compute(kernels, pool, options.execution()), weights, summary,
                List.copyOf(w.matrices()));
    }

    private static ModelSummary summarize(Qwen3MoeConfig c, WeightLoader w) {
        List<TensorInfo> tensors = w.used();
        // parameters: matrices by their logical shape (an NVFP4 checkpoint stores codes, scales and scale
        // scalars, none of which is a parameter count), plus the 1-D tensors (norms)
        java.util.Set<String> counted = new java.util.HashSet<>();
        long total = 0;
        for (WeightMatrix m : w.matrices()) {
            if (counted.add(m.name())) {
                total += (long) m.rows() * m.cols();
            }
        }
        if (!counted.contains("model.embed_tokens.weight")) {
            total += (long) c.vocabSize() * c.hiddenSize(); // the embedding table (a lookup; a matmul too when tied)
        }
        for (TensorInfo t : tensors) {
            if (t.shape().length == 1) {
                total += t.elementCount();
            }
        }
        long perExpert = 3L * c.hiddenSize() * c.moeIntermediateSize();
        long sparseLayers = java.util.stream.IntStream.range(0, c.nLayers()).filter(c::isSparse).count();
        // The usual MoE convention: everything except the experts a token is not routed to.
        long active = total - sparseLayers * (c.nExperts() - c.topK()) * perExpert;
        return new ModelSummary(MODEL_TYPE, "Qwen3MoeForCausalLM", c.asMap(), total, active, tensors, w.unused(),
                w.matrices().stream().map(ModelSummary.MatrixInfo::of).toList(), w.quantizeNanos(), w.cacheReport());
    }
}
