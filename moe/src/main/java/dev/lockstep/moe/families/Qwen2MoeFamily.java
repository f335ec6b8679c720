package dev.lockstep.moe.families;

import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.TierPlacement.Role;
import dev.lockstep.moe.ConfigException;
import dev.lockstep.moe.ModelConfigJson;
import dev.lockstep.moe.WeightLoader;
import dev.lockstep.moe.block.AttentionBlock;
import dev.lockstep.moe.block.FeedForward;
import dev.lockstep.moe.block.SparseMoeBlock;
import dev.lockstep.moe.decoder.BaseConfig;
import dev.lockstep.moe.decoder.DecoderFamily;
import dev.lockstep.moe.decoder.DecoderModel;
import dev.lockstep.moe.decoder.Declare;

import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * {@code qwen2_moe}: HF {@code Qwen2MoeForCausalLM} ({@code modeling_qwen2_moe.py}; Qwen1.5-MoE-A2.7B): q/k/v
 * biases, softmax then top-k (renormalized when {@code norm_topk_prob}), SwiGLU experts, and a shared expert added
 * to every token scaled by {@code sigmoid(shared_expert_gate . x)}; dense MLP on {@code mlp_only_layers}.
 */
public final class Qwen2MoeFamily extends DecoderFamily<Qwen2MoeFamily.Config> {
    public record Config(BaseConfig base, int intermediateSize, int moeIntermediateSize, int sharedExpertIntermediateSize,
                         boolean normTopKProb, boolean qkvBias, int decoderSparseStep, Set<Integer> mlpOnlyLayers)
            implements DecoderFamily.Config {
        boolean isSparse(int layer) {
            return !mlpOnlyLayers.contains(layer) && (layer + 1) % decoderSparseStep == 0;
        }

        @Override
        public Map<String, Object> asMap() {
            Map<String, Object> m = base.asMap();
            m.put("intermediate_size", intermediateSize);
            m.put("moe_intermediate_size", moeIntermediateSize);
            m.put("shared_expert_intermediate_size", sharedExpertIntermediateSize);
            m.put("norm_topk_prob", normTopKProb);
            m.put("qkv_bias", qkvBias);
            m.put("decoder_sparse_step", decoderSparseStep);
            m.put("mlp_only_layers", new TreeSet<>(mlpOnlyLayers));
            return m;
        }
    }

    @Override
    public String modelType() {
        return "qwen2_moe";
    }

    @Override
    public String architecture() {
        return "Qwen2MoeForCausalLM";
    }

    @Override
    protected Config parse(ModelConfigJson c) {
        BaseConfig b = BaseConfig.parse(c);
        if (c.booleanOr(false, "use_sliding_window")) {
            throw new ConfigException(c.where() + ": use_sliding_window=true is not supported for qwen2_moe yet");
        }
        List<Integer> mlpOnly = c.intListOr(List.of(), "mlp_only_layers");
        for (int l : mlpOnly) {
            if (l >= b.nLayers()) {
                throw new ConfigException(c.where() + ": mlp_only_layers names layer " + l + " but num_hidden_layers is " + b.nLayers());
            }
        }
        return new Config(b, b.intermediate(c, "intermediate_size"), b.intermediate(c, "moe_intermediate_size"),
                b.intermediate(c, "shared_expert_intermediate_size"), c.booleanOr(false, "norm_topk_prob"), c.booleanOr(true, "qkv_bias"),
                c.intInRangeOr(1, 1, BaseConfig.MAX_LAYERS, "decoder_sparse_step"), Set.copyOf(mlpOnly));
    }

    @Override
    protected DecoderModel.Layer layer(Config c, int l, WeightLoader w, Rope rope) {
        BaseConfig b = c.base();
        int h = b.hiddenSize(), e = b.nExperts();
        String p = "model.layers." + l + ".";
        float[] inputNorm = w.vector(p + "input_layernorm.weight", h);
        AttentionBlock attention = Declare.attention(w, p, b, new Declare.AttentionTensors(c.qkvBias(), false, AttentionBlock.QkNorm.NONE, false),
                AttentionBlock.Spec.defaultScale(b.headDim()), 0, rope);
        float[] postNorm = w.vector(p + "post_attention_layernorm.weight", h);
        FeedForward ffn;
        if (c.isSparse(l)) {
            WeightMatrix router = w.matrix(p + "mlp.gate.weight", Role.ROUTER, e, h);
            WeightMatrix[][] x = Declare.experts(w, p + "mlp.experts.", e, c.moeIntermediateSize(), h, "gate_proj", "up_proj", "down_proj");
            SparseMoeBlock.SharedExpert shared = new SparseMoeBlock.SharedExpert(
                    Declare.mlp(w, p + "mlp.shared_expert.", c.sharedExpertIntermediateSize(), h, Role.MLP),
                    w.matrix(p + "mlp.shared_expert_gate.weight", Role.ROUTER, 1, h));
            ffn = new SparseMoeBlock(router, null, x[0], x[1], x[2], null, shared, SparseMoeBlock.Spec.softmaxTopK(b.topK(), c.normTopKProb()));
        } else {
            ffn = Declare.mlp(w, p + "mlp.", c.intermediateSize(), h, Role.MLP);
        }
        return new DecoderModel.Layer(inputNorm, attention, postNorm, ffn);
    }
}
