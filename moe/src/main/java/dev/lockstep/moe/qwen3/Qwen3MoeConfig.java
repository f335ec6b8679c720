package dev.lockstep.moe.qwen3;

import com.fasterxml.jackson.databind.JsonNode;
import dev.lockstep.moe.ConfigException;
import dev.lockstep.moe.ModelConfigJson;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;

/**
 * Hyper-parameters of {@code qwen3_moe} (HF {@code Qwen3MoeConfig}). Accepts both key spellings that
 * transformers has written: {@code num_experts}/{@code num_local_experts} and
 * {@code rope_theta}/{@code rope_parameters.rope_theta}.
 */
public record Qwen3MoeConfig(int vocabSize, int hiddenSize, int nLayers, int nHeads, int nKvHeads, int headDim,
                             int intermediateSize, int moeIntermediateSize, int nExperts, int topK,
                             boolean normTopKProb, int decoderSparseStep, Set<Integer> mlpOnlyLayers,
                             float rmsNormEps, double ropeTheta, boolean tieWordEmbeddings, int maxPositionEmbeddings) {

    public static Qwen3MoeConfig parse(ModelConfigJson c) {
        int hidden = c.requirePositiveInt("hidden_size");
        int nHeads = c.requirePositiveInt("num_attention_heads");
        int nKvHeads = c.positiveIntOr(nHeads, "num_key_value_heads");
        int nLayers = c.requirePositiveInt("num_hidden_layers");
        int nExperts = c.requirePositiveInt("num_experts", "num_local_experts");
        int topK = c.requirePositiveInt("num_experts_per_tok");
        if (nHeads % nKvHeads != 0) {
            throw new ConfigException(c.file() + ": num_attention_heads (" + nHeads + ") must be a multiple of num_key_value_heads (" + nKvHeads + ")");
        }
        if (topK > nExperts) {
            throw new ConfigException(c.file() + ": num_experts_per_tok (" + topK + ") exceeds the number of experts (" + nExperts + ")");
        }
        if (c.booleanOr(false, "attention_bias")) {
            throw new ConfigException(c.file() + ": attention_bias=true is not supported for qwen3_moe yet (the checkpoints we know have none)");
        }
        if (c.booleanOr(false, "use_sliding_window")) {
            throw new ConfigException(c.file() + ": use_sliding_window=true is not supported for qwen3_moe yet");
        }
        List<Integer> mlpOnly = c.intListOr(List.of(), "mlp_only_layers");
        for (int l : mlpOnly) {
            if (l >= nLayers) {
                throw new ConfigException(c.file() + ": mlp_only_layers names layer " + l + " but num_hidden_layers is " + nLayers);
            }
        }
        int headDim = c.positiveIntOr(hidden / nHeads, "head_dim");
        if (headDim % 2 != 0) {
            throw new ConfigException(c.file() + ": head_dim must be even for RoPE, got " + headDim);
        }
        return new Qwen3MoeConfig(
                c.requirePositiveInt("vocab_size"), hidden, nLayers, nHeads, nKvHeads, headDim,
                c.requirePositiveInt("intermediate_size"), c.requirePositiveInt("moe_intermediate_size"),
                nExperts, topK, c.booleanOr(false, "norm_topk_prob"),
                c.positiveIntOr(1, "decoder_sparse_step"), Set.copyOf(new TreeSet<>(mlpOnly)),
                (float) c.requirePositiveDouble("rms_norm_eps"), ropeTheta(c),
                c.booleanOr(false, "tie_word_embeddings"), c.positiveIntOr(32768, "max_position_embeddings"));
    }

    private static double ropeTheta(ModelConfigJson c) {
        JsonNode params = c.object("rope_parameters");
        JsonNode scaling = c.object("rope_scaling");
        for (JsonNode p : new JsonNode[]{params, scaling}) {
            if (p != null && p.has("rope_type") && !p.get("rope_type").asText().equals("default")) {
                throw new ConfigException(c.file() + ": rope_type '" + p.get("rope_type").asText()
                        + "' is not supported for qwen3_moe yet (supported: default)");
            }
        }
        if (c.has("rope_theta")) {
            return c.requirePositiveDouble("rope_theta");
        }
        if (params != null && params.has("rope_theta")) {
            JsonNode t = params.get("rope_theta");
            if (!t.isNumber() || !(t.asDouble() > 0)) {
                throw new ConfigException(c.file() + ": rope_parameters.rope_theta must be a positive number, got " + t);
            }
            return t.asDouble();
        }
        throw new ConfigException(c.file() + ": missing 'rope_theta' (or 'rope_parameters.rope_theta')");
    }

    /** HF {@code Qwen3MoeDecoderLayer}: sparse unless listed in mlp_only_layers or off the sparse step. */
    public boolean isSparse(int layer) {
        return !mlpOnlyLayers.contains(layer) && nExperts > 0 && (layer + 1) % decoderSparseStep == 0;
    }

    public int qDim() {
        return nHeads * headDim;
    }

    public int kvDim() {
        return nKvHeads * headDim;
    }

    public Map<String, Object> asMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("vocab_size", vocabSize);
        m.put("hidden_size", hiddenSize);
        m.put("num_hidden_layers", nLayers);
        m.put("num_attention_heads", nHeads);
        m.put("num_key_value_heads", nKvHeads);
        m.put("head_dim", headDim);
        m.put("num_experts", nExperts);
        m.put("num_experts_per_tok", topK);
        m.put("moe_intermediate_size", moeIntermediateSize);
        m.put("intermediate_size", intermediateSize);
        m.put("norm_topk_prob", normTopKProb);
        m.put("decoder_sparse_step", decoderSparseStep);
        m.put("mlp_only_layers", new TreeSet<>(mlpOnlyLayers));
        m.put("rms_norm_eps", rmsNormEps);
        m.put("rope_theta", ropeTheta);
        m.put("tie_word_embeddings", tieWordEmbeddings);
        m.put("max_position_embeddings", maxPositionEmbeddings);
        return m;
    }
}
