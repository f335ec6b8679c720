package dev.lockstep.moe.qwen3;

import dev.lockstep.moe.ConfigException;
import dev.lockstep.moe.ModelConfigJson;
import dev.lockstep.moe.decoder.BaseConfig;
import dev.lockstep.moe.decoder.DecoderFamily;

import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * Hyper-parameters of {@code qwen3_moe} (HF {@code Qwen3MoeConfig}) beyond the common ones: the dense and expert
 * FFN widths, {@code norm_topk_prob}, and which layers are sparse ({@code decoder_sparse_step},
 * {@code mlp_only_layers}). Accepts both key spellings transformers has written ({@code num_experts}/
 * {@code num_local_experts}, {@code rope_theta}/{@code rope_parameters.rope_theta}).
 */
public record Qwen3MoeConfig(BaseConfig base, int intermediateSize, int moeIntermediateSize, boolean normTopKProb,
                             int decoderSparseStep, Set<Integer> mlpOnlyLayers) implements DecoderFamily.Config {

    public static Qwen3MoeConfig parse(ModelConfigJson c) {
        BaseConfig base = BaseConfig.parse(c);
        if (c.booleanOr(false, "attention_bias")) {
            throw new ConfigException(c.where() + ": attention_bias=true is not supported for qwen3_moe yet (the checkpoints we know have none)");
        }
        if (c.booleanOr(false, "use_sliding_window")) {
            throw new ConfigException(c.where() + ": use_sliding_window=true is not supported for qwen3_moe yet");
        }
        List<Integer> mlpOnly = c.intListOr(List.of(), "mlp_only_layers");
        for (int l : mlpOnly) {
            if (l >= base.nLayers()) {
                throw new ConfigException(c.where() + ": mlp_only_layers names layer " + l + " but num_hidden_layers is " + base.nLayers());
            }
        }
        int intermediate = base.intermediate(c, "intermediate_size");
        int moeIntermediate = base.intermediate(c, "moe_intermediate_size");
        int decoderSparseStep = c.intInRangeOr(1, 1, BaseConfig.MAX_LAYERS, "decoder_sparse_step");
        return new Qwen3MoeConfig(base, intermediate, moeIntermediate, c.booleanOr(false, "norm_topk_prob"), decoderSparseStep,
                Set.copyOf(new TreeSet<>(mlpOnly)));
    }

    /** HF {@code Qwen3MoeDecoderLayer}: sparse unless listed in mlp_only_layers or off the sparse step. */
    public boolean isSparse(int layer) {
        return !mlpOnlyLayers.contains(layer) && base.nExperts() > 0 && (layer + 1) % decoderSparseStep == 0;
    }

    @Override
    public Map<String, Object> asMap() {
        Map<String, Object> m = base.asMap();
        m.put("moe_intermediate_size", moeIntermediateSize);
        m.put("intermediate_size", intermediateSize);
        m.put("norm_topk_prob", normTopKProb);
        m.put("decoder_sparse_step", decoderSparseStep);
        m.put("mlp_only_layers", new TreeSet<>(mlpOnlyLayers));
        return m;
    }
}
