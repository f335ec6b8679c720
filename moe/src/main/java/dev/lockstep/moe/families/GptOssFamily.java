package dev.lockstep.moe.families;

import com.fasterxml.jackson.databind.JsonNode;
import dev.lockstep.kernels.Rope;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.TierPlacement.Role;
import dev.lockstep.moe.ConfigException;
import dev.lockstep.moe.ModelConfigJson;
import dev.lockstep.moe.WeightLoader;
import dev.lockstep.moe.WeightLoader.ExpertLayout;
import dev.lockstep.moe.WeightLoader.Part;
import dev.lockstep.moe.block.AttentionBlock;
import dev.lockstep.moe.block.SparseMoeBlock;
import dev.lockstep.moe.decoder.BaseConfig;
import dev.lockstep.moe.decoder.DecoderFamily;
import dev.lockstep.moe.decoder.DecoderModel;
import dev.lockstep.moe.decoder.Declare;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * {@code gpt_oss}: HF {@code GptOssForCausalLM} ({@code modeling_gpt_oss.py}; gpt-oss-20b): biases on q/k/v/o, one
 * learned sink logit per head in every softmax, {@code layer_types} alternating {@code sliding_attention} (window
 * {@code sliding_window}) and {@code full_attention}, YaRN RoPE; router with a bias, top-k of the logits then softmax;
 * experts with biases and the clamped SwiGLU ({@code alpha} 1.702, {@code limit} = {@code swiglu_limit}, 7),
 * stored as {@code gate_up_proj [E, hidden, 2*inter]} (gate and up interleaved along the last axis) and
 * {@code down_proj [E, inter, hidden]}.
 */
public final class GptOssFamily extends DecoderFamily<GptOssFamily.Config> {
    static final float ALPHA = 1.702f;

    public record Config(BaseConfig base, int intermediateSize, int slidingWindow, List<Boolean> sliding, float swigluLimit)
            implements DecoderFamily.Config {
        @Override
        public Map<String, Object> asMap() {
            Map<String, Object> m = base.asMap();
            m.put("intermediate_size", intermediateSize);
            m.put("sliding_window", slidingWindow);
            m.put("layer_types", sliding.stream().map(s -> s ? "sliding_attention" : "full_attention").toList());
            m.put("swiglu_limit", swigluLimit);
            return m;
        }
    }

    @Override
    public String modelType() {
        return "gpt_oss";
    }

    @Override
    public String architecture() {
        return "GptOssForCausalLM";
    }

    @Override
    protected Config parse(ModelConfigJson c) {
        BaseConfig b = BaseConfig.parse(c);
        if (!c.booleanOr(true, "attention_bias")) {
            throw new ConfigException(c.where() + ": attention_bias=false is not supported for gpt_oss (every released checkpoint has biases)");
        }
        int window = c.requireIntInRange(1, BaseConfig.MAX_POSITIONS, "sliding_window");
        List<Boolean> sliding = new ArrayList<>();
        JsonNode types = c.raw("layer_types");
        if (types == null) {
            for (int l = 0; l < b.nLayers(); l++) {
                sliding.add(l % 2 == 0); // HF's default: sliding, full, sliding, ...
            }
        } else {
            if (!types.isArray() || types.size() != b.nLayers()) {
                throw new ConfigException(c.where() + ": layer_types must list one type per layer (" + b.nLayers() + "), got " + types);
            }
            for (JsonNode t : types) {
                switch (t.asText()) {
                    case "sliding_attention" -> sliding.add(true);
                    case "full_attention" -> sliding.add(false);
                    default -> throw new ConfigException(c.where() + ": layer_types holds '" + t.asText()
                            + "' (supported: sliding_attention, full_attention)");
                }
            }
        }
        float limit = c.has("swiglu_limit") ? (float) c.requireDoubleInRange(1e-3, 1e6, "swiglu_limit") : 7.0f;
        return new Config(b, b.intermediate(c, "intermediate_size"), window, List.copyOf(sliding), limit);
    }

    @Override
    protected DecoderModel.Layer layer(Config c, int l, WeightLoader w, Rope rope) {
        BaseConfig b = c.base();
        int h = b.hiddenSize(), e = b.nExperts(), i = c.intermediateSize();
        String p = "model.layers." + l + ".";
        float[] inputNorm = w.vector(p + "input_layernorm.weight", h);
        AttentionBlock attention = Declare.attention(w, p, b, new Declare.AttentionTensors(true, true, AttentionBlock.QkNorm.NONE, true),
                AttentionBlock.Spec.defaultScale(b.headDim()), c.sliding().get(l) ? c.slidingWindow() : 0, rope);
        float[] postNorm = w.vector(p + "post_attention_layernorm.weight", h);
        String m = p + "mlp.";
        WeightMatrix router = w.matrix(m + "router.weight", Role.ROUTER, e, h);
        float[] routerBias = w.vector(m + "router.bias", e);
        WeightMatrix[] gate = new WeightMatrix[e], up = new WeightMatrix[e], down = new WeightMatrix[e];
        for (int x = 0; x < e; x++) {
            List<WeightMatrix> gu = w.expertMatrices(m + "experts.gate_up_proj", ExpertLayout.IN_OUT, e, 2 * i, h, x,
                    List.of(new Part("gate", 0, 2, i), new Part("up", 1, 2, i)), Role.EXPERT);
            gate[x] = gu.get(0);
            up[x] = gu.get(1);
            down[x] = w.expertMatrices(m + "experts.down_proj", ExpertLayout.IN_OUT, e, h, i, x, List.of(new Part(null, 0, 1, h)),
                    Role.EXPERT).get(0);
        }
        float[][] gateUpBias = w.vectors(m + "experts.gate_up_proj_bias", e, 2 * i);
        float[][] downBias = w.vectors(m + "experts.down_proj_bias", e, h);
        float[][] gateBias = new float[e][i], upBias = new float[e][i];
        for (int x = 0; x < e; x++) {
            for (int r = 0; r < i; r++) {
                gateBias[x][r] = gateUpBias[x][2 * r];
                upBias[x][r] = gateUpBias[x][2 * r + 1];
            }
        }
        SparseMoeBlock.Spec spec = new SparseMoeBlock.Spec(b.topK(), SparseMoeBlock.Routing.TOP_K_SOFTMAX, false,
                SparseMoeBlock.Activation.CLAMPED_SWIGLU, ALPHA, c.swigluLimit());
        return new DecoderModel.Layer(inputNorm, attention, postNorm, new SparseMoeBlock(router, routerBias, gate, up, down,
                new SparseMoeBlock.ExpertBiases(gateBias, upBias, downBias), null, spec));
    }
}
