package dev.lockstep.moe.families;

import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.TierPlacement.Role;
import dev.lockstep.moe.ConfigException;
import dev.lockstep.moe.ModelConfigJson;
import dev.lockstep.moe.WeightLoader;
import dev.lockstep.moe.block.FeedForward;
import dev.lockstep.moe.block.MlaBlock;
import dev.lockstep.moe.block.SparseMoeBlock;
import dev.lockstep.moe.decoder.BaseConfig;
import dev.lockstep.moe.decoder.DecoderFamily;
import dev.lockstep.moe.decoder.DecoderModel;
import dev.lockstep.moe.decoder.Declare;

import java.util.Map;

/**
 * {@code deepseek_v3}: HF {@code DeepseekV3ForCausalLM} ({@code modeling_deepseek_v3.py}; DeepSeek-V3's layout,
 * Moonlight-16B-A3B, Kimi-K2): multi-head latent attention ({@link MlaBlock}: q LoRA, compressed KV, decoupled
 * RoPE dims, interleaved when {@code rope_interleave}); dense MLP on the first {@code first_k_dense_replace} layers;
 * then sigmoid routing with {@code e_score_correction_bias}, group-limited top-k ({@code n_group},
 * {@code topk_group}), {@code routed_scaling_factor}, and {@code n_shared_experts} always-on experts.
 */
public final class DeepseekV3Family extends DecoderFamily<DeepseekV3Family.Config> {
    public record Config(BaseConfig base, int qLoraRank, int kvLoraRank, int nopeDim, int ropeDim, int vDim, int intermediateSize,
                         int moeIntermediateSize, int nSharedExperts, int firstKDense, int nGroup, int topKGroup, float routedScaling,
                         boolean normTopKProb, boolean ropeInterleave) implements DecoderFamily.Config {
        @Override
        public Map<String, Object> asMap() {
            Map<String, Object> m = base.asMap();
            m.remove("num_key_value_heads");
            m.remove("head_dim");
            m.put("q_lora_rank", qLoraRank == 0 ? null : qLoraRank);
            m.put("kv_lora_rank", kvLoraRank);
            m.put("qk_nope_head_dim", nopeDim);
            m.put("qk_rope_head_dim", ropeDim);
            m.put("v_head_dim", vDim);
            m.put("intermediate_size", intermediateSize);
            m.put("moe_intermediate_size", moeIntermediateSize);
            m.put("n_shared_experts", nSharedExperts);
            m.put("first_k_dense_replace", firstKDense);
            m.put("n_group", nGroup);
            m.put("topk_group", topKGroup);
            m.put("routed_scaling_factor", routedScaling);
            m.put("norm_topk_prob", normTopKProb);
            m.put("rope_interleave", ropeInterleave);
            return m;
        }
    }

    @Override
    public String modelType() {
        return "deepseek_v3";
    }

    @Override
    public String architecture() {
        return "DeepseekV3ForCausalLM";
    }

    @Override
    protected Config parse(ModelConfigJson c) {
        BaseConfig b = BaseConfig.parse(c);
        if (c.booleanOr(false, "attention_bias")) {
            throw new ConfigException(c.where() + ": attention_bias=true is not supported for deepseek_v3 (DeepSeek-V3, Moonlight and Kimi-K2 have none)");
        }
        if (c.has("scoring_func") && !"sigmoid".equals(c.requireString("scoring_func"))) {
            throw new ConfigException(c.where() + ": scoring_func '" + c.requireString("scoring_func") + "' is not supported (supported: sigmoid)");
        }
        if (c.has("topk_method") && !"noaux_tc".equals(c.requireString("topk_method"))) {
            throw new ConfigException(c.where() + ": topk_method '" + c.requireString("topk_method") + "' is not supported (supported: noaux_tc)");
        }
        if (c.intInRangeOr(1, 1, BaseConfig.MAX_LAYERS, "moe_layer_freq") != 1) {
            throw new ConfigException(c.where() + ": moe_layer_freq other than 1 is not supported");
        }
        int qLora = c.has("q_lora_rank") ? c.requireIntInRange(1, BaseConfig.MAX_HIDDEN, "q_lora_rank") : 0;
        int kvLora = c.requireIntInRange(1, BaseConfig.MAX_HIDDEN, "kv_lora_rank");
        int nope = c.requireIntInRange(1, BaseConfig.MAX_HEAD_DIM, "qk_nope_head_dim");
        int rope = c.requireIntInRange(2, BaseConfig.MAX_HEAD_DIM, "qk_rope_head_dim");
        if (rope % 2 != 0) {
            throw new ConfigException(c.where() + ": qk_rope_head_dim must be even for RoPE, got " + rope);
        }
        int v = c.requireIntInRange(1, BaseConfig.MAX_HEAD_DIM, "v_head_dim");
        int groups = c.intInRangeOr(1, 1, BaseConfig.MAX_EXPERTS, "n_group");
        int topKGroup = c.intInRangeOr(1, 1, BaseConfig.MAX_EXPERTS, "topk_group");
        if (b.nExperts() % groups != 0 || groups > 64 || topKGroup > groups || (groups > 1 && b.nExperts() / groups < 2)) {
            throw new ConfigException(c.where() + ": n_group (" + groups + ") must divide n_routed_experts (" + b.nExperts()
                    + ") into groups of at least 2, at most 64 groups, and topk_group (" + topKGroup + ") must not exceed it");
        }
        int firstKDense = c.has("first_k_dense_replace") ? c.raw("first_k_dense_replace").asInt() : 0;
        if (firstKDense < 0 || firstKDense > b.nLayers()) {
            throw new ConfigException(c.where() + ": first_k_dense_replace must be in [0, num_hidden_layers], got " + firstKDense);
        }
        int shared = c.has("n_shared_experts") ? c.raw("n_shared_experts").asInt() : 0;
        if (shared < 0 || shared > BaseConfig.MAX_EXPERTS) {
            throw new ConfigException(c.where() + ": n_shared_experts must be in [0, " + BaseConfig.MAX_EXPERTS + "], got " + shared);
        }
        return new Config(b, qLora, kvLora, nope, rope, v, b.intermediate(c, "intermediate_size"), b.intermediate(c, "moe_intermediate_size"),
                shared, firstKDense, groups, topKGroup, (float) c.requireDoubleInRange(1e-6, 1e6, "routed_scaling_factor"),
                c.booleanOr(false, "norm_topk_prob"), c.booleanOr(true, "rope_interleave"));
    }

    @Override
    protected Rope rope(Config c) {
        return c.base().rope().newRope(c.ropeDim(), c.base().maxPositionEmbeddings());
    }

    @Override
    protected DecoderModel.Layer layer(Config c, int l, WeightLoader w, Rope rope) {
        BaseConfig b = c.base();
        int h = b.hiddenSize(), heads = b.nHeads(), rank = c.kvLoraRank(), nope = c.nopeDim(), v = c.vDim(), qk = nope + c.ropeDim();
        String p = "model.layers." + l + ".", a = p + "self_attn.";
        float[] inputNorm = w.vector(p + "input_layernorm.weight", h);
        WeightMatrix qA = null, qB;
        float[] qANorm = null;
        if (c.qLoraRank() > 0) {
            qA = w.matrix(a + "q_a_proj.weight", Role.ATTENTION, c.qLoraRank(), h);
            qANorm = w.vector(a + "q_a_layernorm.weight", c.qLoraRank());
            qB = w.matrix(a + "q_b_proj.weight", Role.ATTENTION, heads * qk, c.qLoraRank());
        } else {
            qB = w.matrix(a + "q_proj.weight", Role.ATTENTION, heads * qk, h);
        }
        WeightMatrix kvA = w.matrix(a + "kv_a_proj_with_mqa.weight", Role.ATTENTION, rank + c.ropeDim(), h);
        float[] kvANorm = w.vector(a + "kv_a_layernorm.weight", rank);
        // kv_b_proj [heads*(nope+v), rank]: head h's rows are its nope key rows, then its value rows
        String kvb = a + "kv_b_proj.weight";
        WeightMatrix kAbsorbed = w.rearranged(kvb, heads * (nope + v), rank, "k_absorbed", heads * rank, nope,
                (r, col) -> ((r / rank) * (nope + v) + col) * rank + r % rank, Role.ATTENTION);
        WeightMatrix vUp = w.rearranged(kvb, heads * (nope + v), rank, "v_up", heads * v, rank,
                (r, col) -> ((r / v) * (nope + v) + nope + r % v) * rank + col, Role.ATTENTION);
        WeightMatrix o = w.matrix(a + "o_proj.weight", Role.ATTENTION, h, heads * v);
        MlaBlock attention = new MlaBlock(new MlaBlock.Weights(qA, qANorm, qB, kvA, kvANorm, kAbsorbed, vUp, o),
                new MlaBlock.Spec(heads, c.qLoraRank(), rank, nope, c.ropeDim(), v, (float) (1.0 / Math.sqrt(qk)), b.rmsNormEps(),
                        c.ropeInterleave()), rope);
        float[] postNorm = w.vector(p + "post_attention_layernorm.weight", h);
        FeedForward ffn;
        if (l >= c.firstKDense()) {
            int e = b.nExperts();
            WeightMatrix router = w.matrix(p + "mlp.gate.weight", Role.ROUTER, e, h);
            float[] correction = w.vector(p + "mlp.gate.e_score_correction_bias", e);
            WeightMatrix[][] x = Declare.experts(w, p + "mlp.experts.", e, c.moeIntermediateSize(), h, "gate_proj", "up_proj", "down_proj");
            SparseMoeBlock.SharedExpert shared = c.nSharedExperts() == 0 ? null : new SparseMoeBlock.SharedExpert(
                    Declare.mlp(w, p + "mlp.shared_experts.", c.moeIntermediateSize() * c.nSharedExperts(), h, Role.MLP), null);
            SparseMoeBlock.Spec spec = new SparseMoeBlock.Spec(b.topK(), SparseMoeBlock.Routing.SIGMOID_GROUPED, c.normTopKProb(),
                    SparseMoeBlock.Activation.SWIGLU, 0f, 0f, c.nGroup(), c.topKGroup(), c.routedScaling());
            ffn = new SparseMoeBlock(router, correction, x[0], x[1], x[2], null, shared, spec);
        } else {
            ffn = Declare.mlp(w, p + "mlp.", c.intermediateSize(), h, Role.MLP);
        }
        return new DecoderModel.Layer(inputNorm, attention, postNorm, ffn);
    }
}
