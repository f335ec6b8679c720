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

    /** Largest count or size accepted for each hyper-parameter: far above any published model, far below overflow. */
    static final int MAX_VOCAB = 1 << 22;
    static final int MAX_HIDDEN = 1 << 16;
    static final int MAX_LAYERS = 1 << 10;
    static final int MAX_HEADS = 1 << 10;
    static final int MAX_HEAD_DIM = 1 << 10;
    static final int MAX_INTERMEDIATE = 1 << 18;
    static final int MAX_EXPERTS = 1 << 12;
    static final int MAX_POSITIONS = 1 << 24;
    static final double MIN_EPS = 1e-12, MAX_EPS = 1e-1;
    static final double MAX_ROPE_THETA = 1e12;

    public static Qwen3MoeConfig parse(ModelConfigJson c) {
        int hidden = c.requireIntInRange(1, MAX_HIDDEN, "hidden_size");
        int nHeads = c.requireIntInRange(1, MAX_HEADS, "num_attention_heads");
        int nKvHeads = c.intInRangeOr(nHeads, 1, MAX_HEADS, "num_key_value_heads");
        int nLayers = c.requireIntInRange(1, MAX_LAYERS, "num_hidden_layers");
        int nExperts = c.requireIntInRange(1, MAX_EXPERTS, "num_experts", "num_local_experts");
        int topK = c.requireIntInRange(1, MAX_EXPERTS, "num_experts_per_tok");
        int vocab = c.requireIntInRange(1, MAX_VOCAB, "vocab_size");
        int intermediate = c.requireIntInRange(1, MAX_INTERMEDIATE, "intermediate_size");
        int moeIntermediate = c.requireIntInRange(1, MAX_INTERMEDIATE, "moe_intermediate_size");
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
        if (!c.has("head_dim") && hidden % nHeads != 0) {
            throw new ConfigException(c.file() + ": without 'head_dim', hidden_size (" + hidden + ") must be a multiple of num_attention_heads (" + nHeads + ")");
        }
        int headDim = c.intInRangeOr(hidden / nHeads, 2, MAX_HEAD_DIM, "head_dim");
        if (headDim % 2 != 0) {
            throw new ConfigException(c.file() + ": head_dim must be even for RoPE, got " + headDim);
        }
        // Every matrix must be addressable with int element indices (the kernels' contract): check each product.
        checkElements(c, "num_attention_heads x head_dim x hidden_size (q_proj)", (long) nHeads * headDim, hidden);
        checkElements(c, "vocab_size x hidden_size (embed_tokens, lm_head)", vocab, hidden);
        checkElements(c, "intermediate_size x hidden_size (dense MLP)", intermediate, hidden);
        checkElements(c, "moe_intermediate_size x hidden_size (one expert)", moeIntermediate, hidden);
        checkElements(c, "num_experts x hidden_size (router)", nExperts, hidden);
        int decoderSparseStep = c.intInRangeOr(1, 1, MAX_LAYERS, "decoder_sparse_step");
        float eps = (float) c.requireDoubleInRange(MIN_EPS, MAX_EPS, "rms_norm_eps");
        return new Qwen3MoeConfig(
                vocab, hidden, nLayers, nHeads, nKvHeads, headDim, intermediate, moeIntermediate,
                nExperts, topK, c.booleanOr(false, "norm_topk_prob"),
                decoderSparseStep, Set.copyOf(new TreeSet<>(mlpOnly)),
                eps, ropeTheta(c),
                c.booleanOr(false, "tie_word_embeddings"), c.intInRangeOr(32768, 1, MAX_POSITIONS, "max_position_embeddings"));
    }

    private static void checkElements(ModelConfigJson c, String what, long rows, long cols) {
        long elements = rows * cols; // both factors < 2^31, so no long overflow
        if (elements > Integer.MAX_VALUE - 64) {
            throw new ConfigException(c.file() + ": " + what + " = " + rows + " x " + cols + " = " + elements
                    + " elements in one matrix, more than the 2^31 - 1 the kernels address");
        }
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
            return c.requireDoubleInRange(1, MAX_ROPE_THETA, "rope_theta");
        }
        if (params != null && params.has("rope_theta")) {
            JsonNode t = params.get("rope_theta");
            if (!t.isNumber() || !(t.asDouble() >= 1 && t.asDouble() <= MAX_ROPE_THETA)) {
                throw new ConfigException(c.file() + ": rope_parameters.rope_theta must be a number in [1, " + MAX_ROPE_THETA + "], got " + t);
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
