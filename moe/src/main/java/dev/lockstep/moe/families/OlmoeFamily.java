package dev.lockstep.moe.families;

import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.TierPlacement.Role;
import dev.lockstep.moe.ConfigException;
import dev.lockstep.moe.ModelConfigJson;
import dev.lockstep.moe.WeightLoader;
import dev.lockstep.moe.block.AttentionBlock;
import dev.lockstep.moe.block.SparseMoeBlock;
import dev.lockstep.moe.decoder.BaseConfig;
import dev.lockstep.moe.decoder.DecoderFamily;
import dev.lockstep.moe.decoder.DecoderModel;
import dev.lockstep.moe.decoder.Declare;

import java.util.Map;

/**
 * {@code olmoe}: HF {@code OlmoeForCausalLM} ({@code modeling_olmoe.py}): q and k RMSNorm over the whole projection
 * (before RoPE), softmax then top-k (renormalized when {@code norm_topk_prob}), SwiGLU experts of
 * {@code intermediate_size}.
 */
public final class OlmoeFamily extends DecoderFamily<OlmoeFamily.Config> {
    public record Config(BaseConfig base, int intermediateSize, boolean normTopKProb) implements DecoderFamily.Config {
        @Override
        public Map<String, Object> asMap() {
            Map<String, Object> m = base.asMap();
            m.put("intermediate_size", intermediateSize);
            m.put("norm_topk_prob", normTopKProb);
            return m;
        }
    }

    @Override
    public String modelType() {
        return "olmoe";
    }

    @Override
    public String architecture() {
        return "OlmoeForCausalLM";
    }

    @Override
    protected Config parse(ModelConfigJson c) {
        BaseConfig b = BaseConfig.parse(c);
        if (c.has("clip_qkv")) {
            throw new ConfigException(c.where() + ": clip_qkv is not supported yet (OLMoE-1B-7B has none)");
        }
        if (c.booleanOr(false, "attention_bias")) {
            throw new ConfigException(c.where() + ": attention_bias=true is not supported for olmoe (the released checkpoints have none)");
        }
        return new Config(b, b.intermediate(c, "intermediate_size"), c.booleanOr(false, "norm_topk_prob"));
    }

    @Override
    protected DecoderModel.Layer layer(Config c, int l, WeightLoader w, Rope rope) {
        BaseConfig b = c.base();
        int h = b.hiddenSize(), e = b.nExperts();
        String p = "model.layers." + l + ".";
        float[] inputNorm = w.vector(p + "input_layernorm.weight", h);
        AttentionBlock attention = Declare.attention(w, p, b, new Declare.AttentionTensors(false, false, AttentionBlock.QkNorm.WHOLE, false),
                AttentionBlock.Spec.defaultScale(b.headDim()), 0, rope);
        float[] postNorm = w.vector(p + "post_attention_layernorm.weight", h);
        WeightMatrix router = w.matrix(p + "mlp.gate.weight", Role.ROUTER, e, h);
        WeightMatrix[][] x = Declare.experts(w, p + "mlp.experts.", e, c.intermediateSize(), h, "gate_proj", "up_proj", "down_proj");
        return new DecoderModel.Layer(inputNorm, attention, postNorm, new SparseMoeBlock(router, x[0], x[1], x[2], b.topK(), c.normTopKProb()));
    }
}
