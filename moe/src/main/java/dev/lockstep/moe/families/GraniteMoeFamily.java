package dev.lockstep.moe.families;

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

import java.util.List;
import java.util.Map;

/**
 * {@code granitemoe}: HF {@code GraniteMoeForCausalLM} ({@code modeling_granitemoe.py}; Granite-3 1B-A400M,
 * 3B-A800M): embeddings times {@code embedding_multiplier}, attention scores times {@code attention_multiplier}
 * (instead of {@code 1/sqrt(d)}), each residual branch times {@code residual_multiplier}, logits divided by
 * {@code logits_scaling}; router {@code router.layer} takes the top-k logits then a softmax over them; experts in two
 * 3-D tensors, {@code input_linear [E, 2*inter, hidden]} (gate rows first, then up) and
 * {@code output_linear [E, hidden, inter]}.
 */
public final class GraniteMoeFamily extends DecoderFamily<GraniteMoeFamily.Config> {
    public record Config(BaseConfig base, int intermediateSize, float embeddingMultiplier, float attentionMultiplier,
                         float residualMultiplier, float logitsScaling) implements DecoderFamily.Config {
        @Override
        public float embeddingScale() {
            return embeddingMultiplier;
        }

        @Override
        public float residualScale() {
            return residualMultiplier;
        }

        @Override
        public float logitDivisor() {
            return logitsScaling;
        }

        @Override
        public Map<String, Object> asMap() {
            Map<String, Object> m = base.asMap();
            m.put("intermediate_size", intermediateSize);
            m.put("embedding_multiplier", embeddingMultiplier);
            m.put("attention_multiplier", attentionMultiplier);
            m.put("residual_multiplier", residualMultiplier);
            m.put("logits_scaling", logitsScaling);
            return m;
        }
    }

    @Override
    public String modelType() {
        return "granitemoe";
    }

    @Override
    public String architecture() {
        return "GraniteMoeForCausalLM";
    }

    @Override
    protected Config parse(ModelConfigJson c) {
        BaseConfig b = BaseConfig.parse(c);
        if (c.booleanOr(false, "attention_bias")) {
            throw new ConfigException(c.where() + ": attention_bias=true is not supported for granitemoe (the released checkpoints have none)");
        }
        return new Config(b, b.intermediate(c, "intermediate_size"),
                (float) c.requireDoubleInRange(1e-6, 1e6, "embedding_multiplier"),
                (float) c.requireDoubleInRange(1e-9, 1e6, "attention_multiplier"),
                (float) c.requireDoubleInRange(1e-6, 1e6, "residual_multiplier"),
                (float) c.requireDoubleInRange(1e-6, 1e6, "logits_scaling"));
    }

    @Override
    protected DecoderModel.Layer layer(Config c, int l, WeightLoader w, Rope rope) {
        BaseConfig b = c.base();
        int h = b.hiddenSize(), e = b.nExperts(), i = c.intermediateSize();
        String p = "model.layers." + l + ".";
        float[] inputNorm = w.vector(p + "input_layernorm.weight", h);
        AttentionBlock attention = Declare.attention(w, p, b, Declare.AttentionTensors.PLAIN, c.attentionMultiplier(), 0, rope);
        float[] postNorm = w.vector(p + "post_attention_layernorm.weight", h);
        String m = p + "block_sparse_moe.";
        WeightMatrix router = w.matrix(m + "router.layer.weight", Role.ROUTER, e, h);
        WeightMatrix[] gate = new WeightMatrix[e], up = new WeightMatrix[e], down = new WeightMatrix[e];
        for (int x = 0; x < e; x++) {
            List<WeightMatrix> gu = w.expertMatrices(m + "input_linear.weight", ExpertLayout.OUT_IN, e, 2 * i, h, x,
                    List.of(new Part("gate", 0, 1, i), new Part("up", i, 1, i)), Role.EXPERT);
            gate[x] = gu.get(0);
            up[x] = gu.get(1);
            down[x] = w.expertMatrices(m + "output_linear.weight", ExpertLayout.OUT_IN, e, h, i, x, List.of(new Part(null, 0, 1, h)),
                    Role.EXPERT).get(0);
        }
        SparseMoeBlock.Spec spec = new SparseMoeBlock.Spec(b.topK(), SparseMoeBlock.Routing.TOP_K_SOFTMAX, false,
                SparseMoeBlock.Activation.SWIGLU, 0f, 0f);
        return new DecoderModel.Layer(inputNorm, attention, postNorm, new SparseMoeBlock(router, null, gate, up, down, null, null, spec));
    }
}
