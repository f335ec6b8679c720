package dev.lockstep.moe.families;

import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.TierPlacement.Role;
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
 * {@code mixtral}: HF {@code MixtralForCausalLM} ({@code modeling_mixtral.py}): plain GQA (a sliding window on every
 * layer when {@code sliding_window} is set), softmax then top-k renormalized, SwiGLU experts {@code w1} (gate),
 * {@code w3} (up), {@code w2} (down) under {@code block_sparse_moe}.
 */
public final class MixtralFamily extends DecoderFamily<MixtralFamily.Config> {
    /** {@code intermediate_size} is the expert width; {@code sliding_window} 0 when absent or null. */
    public record Config(BaseConfig base, int intermediateSize, int slidingWindow) implements DecoderFamily.Config {
        @Override
        public Map<String, Object> asMap() {
            Map<String, Object> m = base.asMap();
            m.put("intermediate_size", intermediateSize);
            m.put("sliding_window", slidingWindow == 0 ? null : slidingWindow);
            return m;
        }
    }

    @Override
    public String modelType() {
        return "mixtral";
    }

    @Override
    public String architecture() {
        return "MixtralForCausalLM";
    }

    @Override
    protected Config parse(ModelConfigJson c) {
        BaseConfig b = BaseConfig.parse(c);
        return new Config(b, b.intermediate(c, "intermediate_size"), c.intInRangeOr(0, 1, BaseConfig.MAX_POSITIONS, "sliding_window"));
    }

    @Override
    protected DecoderModel.Layer layer(Config c, int l, WeightLoader w, Rope rope) {
        BaseConfig b = c.base();
        int h = b.hiddenSize(), e = b.nExperts();
        String p = "model.layers." + l + ".";
        float[] inputNorm = w.vector(p + "input_layernorm.weight", h);
        AttentionBlock attention = Declare.attention(w, p, b, Declare.AttentionTensors.PLAIN, AttentionBlock.Spec.defaultScale(b.headDim()),
                c.slidingWindow(), rope);
        float[] postNorm = w.vector(p + "post_attention_layernorm.weight", h);
        WeightMatrix router = w.matrix(p + "block_sparse_moe.gate.weight", Role.ROUTER, e, h);
        WeightMatrix[][] x = Declare.experts(w, p + "block_sparse_moe.experts.", e, c.intermediateSize(), h, "w1", "w3", "w2");
        return new DecoderModel.Layer(inputNorm, attention, postNorm, new SparseMoeBlock(router, x[0], x[1], x[2], b.topK(), true));
    }
}
