package dev.lockstep.moe.qwen3;

import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.TierPlacement.Role;
import dev.lockstep.moe.ModelConfigJson;
import dev.lockstep.moe.WeightLoader;
import dev.lockstep.moe.block.AttentionBlock;
import dev.lockstep.moe.block.FeedForward;
import dev.lockstep.moe.block.SparseMoeBlock;
import dev.lockstep.moe.decoder.BaseConfig;
import dev.lockstep.moe.decoder.DecoderFamily;
import dev.lockstep.moe.decoder.DecoderModel;
import dev.lockstep.moe.decoder.Declare;

/**
 * {@code qwen3_moe}: HF {@code Qwen3MoeForCausalLM} ({@code modeling_qwen3_moe.py}): per-head q/k RMSNorm, no
 * biases, softmax then top-k (renormalized when {@code norm_topk_prob}), SwiGLU experts, dense MLP on
 * {@code mlp_only_layers}.
 */
public final class Qwen3MoeFamily extends DecoderFamily<Qwen3MoeConfig> {
    public static final String MODEL_TYPE = "qwen3_moe";

    @Override
    public String modelType() {
        return MODEL_TYPE;
    }

    @Override
    public String architecture() {
        return "Qwen3MoeForCausalLM";
    }

    @Override
    protected Qwen3MoeConfig parse(ModelConfigJson json) {
        return Qwen3MoeConfig.parse(json);
    }

    @Override
    protected DecoderModel.Layer layer(Qwen3MoeConfig c, int l, WeightLoader w, Rope rope) {
        BaseConfig b = c.base();
        int h = b.hiddenSize();
        String p = "model.layers." + l + ".";
        float[] inputNorm = w.vector(p + "input_layernorm.weight", h);
        AttentionBlock attention = Declare.attention(w, p, b,
                new Declare.AttentionTensors(false, false, AttentionBlock.QkNorm.PER_HEAD, false), AttentionBlock.Spec.defaultScale(b.headDim()), 0, rope);
        float[] postNorm = w.vector(p + "post_attention_layernorm.weight", h);
        FeedForward ffn;
        if (c.isSparse(l)) {
            int e = b.nExperts(), i = c.moeIntermediateSize();
            WeightMatrix router = w.matrix(p + "mlp.gate.weight", Role.ROUTER, e, h);            // [experts, hidden]
            WeightMatrix[][] x = Declare.experts(w, p + "mlp.experts.", e, i, h, "gate_proj", "up_proj", "down_proj");
            ffn = new SparseMoeBlock(router, x[0], x[1], x[2], b.topK(), c.normTopKProb());
        } else {
            ffn = Declare.mlp(w, p + "mlp.", c.intermediateSize(), h, Role.MLP);
        }
        return new DecoderModel.Layer(inputNorm, attention, postNorm, ffn);
    }
}
