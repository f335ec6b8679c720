package dev.lockstep.moe.decoder;

import com.fasterxml.jackson.databind.JsonNode;
import dev.lockstep.kernels.Rope;
import dev.lockstep.moe.ConfigException;
import dev.lockstep.moe.ModelConfigJson;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * The hyper-parameters every decoder family has, read and range-checked once (each family adds its own keys):
 * sizes, heads, the norm epsilon, RoPE, tying, and the routed experts ({@code num_experts},
 * {@code num_local_experts} or {@code n_routed_experts}; {@code num_experts_per_tok}). Errors name the file, the
 * family and the key.
 */
public record BaseConfig(int vocabSize, int hiddenSize, int nLayers, int nHeads, int nKvHeads, int headDim,
                         int nExperts, int topK, float rmsNormEps, RopeSpec rope, boolean tieWordEmbeddings,
                         int maxPositionEmbeddings) {

    /** Largest count or size accepted for each hyper-parameter: far above any published model, far below overflow. */
    public static final int MAX_VOCAB = 1 << 22;
    public static final int MAX_HIDDEN = 1 << 16;
    public static final int MAX_LAYERS = 1 << 10;
    public static final int MAX_HEADS = 1 << 10;
    public static final int MAX_HEAD_DIM = 1 << 10;
    public static final int MAX_INTERMEDIATE = 1 << 18;
    public static final int MAX_EXPERTS = 1 << 12;
    public static final int MAX_POSITIONS = 1 << 24;
    static final double MIN_EPS = 1e-12, MAX_EPS = 1e-1;
    static final double MAX_ROPE_THETA = 1e12;

    /**
     * RoPE as config.json gives it ({@code rope_parameters} in transformers 5, {@code rope_scaling} + {@code rope_theta}
     * before): {@code default} or {@code yarn} with its factor, betas, original context, truncation and attention factor.
     */
    public record RopeSpec(String type, double theta, double factor, double betaFast, double betaSlow, int originalMaxPositions,
                           boolean truncate, Double attentionFactor) {
        /** The tables for heads of {@code headDim}, sized lazily up to the positions a forward reaches. */
        public Rope newRope(int headDim, int maxPositions) {
            int initial = Math.min(maxPositions, 4096);
            return type.equals("yarn")
                    ? Rope.yarn(headDim, theta, factor, betaFast, betaSlow, originalMaxPositions, truncate, attentionFactor, initial)
                    : new Rope(headDim, theta, initial);
        }
    }

    /** Reads the common keys; {@code family} names the family in errors (also present as model_type). */
    public static BaseConfig parse(ModelConfigJson c) {
        int hidden = c.requireIntInRange(1, MAX_HIDDEN, "hidden_size");
        int nHeads = c.requireIntInRange(1, MAX_HEADS, "num_attention_heads");
        int nKvHeads = c.intInRangeOr(nHeads, 1, MAX_HEADS, "num_key_value_heads");
        int nLayers = c.requireIntInRange(1, MAX_LAYERS, "num_hidden_layers");
        int nExperts = c.requireIntInRange(1, MAX_EXPERTS, "num_experts", "num_local_experts", "n_routed_experts");
        int topK = c.requireIntInRange(1, MAX_EXPERTS, "num_experts_per_tok");
        int vocab = c.requireIntInRange(1, MAX_VOCAB, "vocab_size");
        if (nHeads % nKvHeads != 0) {
            throw new ConfigException(c.where() + ": num_attention_heads (" + nHeads + ") must be a multiple of num_key_value_heads (" + nKvHeads + ")");
        }
        if (topK > nExperts) {
            throw new ConfigException(c.where() + ": num_experts_per_tok (" + topK + ") exceeds the number of experts (" + nExperts + ")");
        }
        if (!c.has("head_dim") && hidden % nHeads != 0) {
            throw new ConfigException(c.where() + ": without 'head_dim', hidden_size (" + hidden + ") must be a multiple of num_attention_heads (" + nHeads + ")");
        }
        int headDim = c.intInRangeOr(hidden / nHeads, 2, MAX_HEAD_DIM, "head_dim");
        if (headDim % 2 != 0) {
            throw new ConfigException(c.where() + ": head_dim must be even for RoPE, got " + headDim);
        }
        checkElements(c, "num_attention_heads x head_dim x hidden_size (q_proj)", (long) nHeads * headDim, hidden);
        checkElements(c, "vocab_size x hidden_size (embed_tokens, lm_head)", vocab, hidden);
        checkElements(c, "num_experts x hidden_size (router)", nExperts, hidden);
        float eps = (float) c.requireDoubleInRange(MIN_EPS, MAX_EPS, "rms_norm_eps");
        int maxPositions = c.intInRangeOr(32768, 1, MAX_POSITIONS, "max_position_embeddings");
        return new BaseConfig(vocab, hidden, nLayers, nHeads, nKvHeads, headDim, nExperts, topK, eps, rope(c, maxPositions),
                c.booleanOr(false, "tie_word_embeddings"), maxPositions);
    }

    /** An intermediate size (FFN width) under {@code key}, checked to be addressable as one matrix. */
    public int intermediate(ModelConfigJson c, String... keys) {
        int inter = c.requireIntInRange(1, MAX_INTERMEDIATE, keys);
        checkElements(c, keys[0] + " x hidden_size", inter, hiddenSize);
        return inter;
    }

    /** Every matrix must be addressable with int element indices (the kernels' contract). */
    public static void checkElements(ModelConfigJson c, String what, long rows, long cols) {
        long elements = rows * cols; // both factors < 2^31, so no long overflow
        if (elements > Integer.MAX_VALUE - 64) {
            throw new ConfigException(c.where() + ": " + what + " = " + rows + " x " + cols + " = " + elements
                    + " elements in one matrix, more than the 2^31 - 1 the kernels address");
        }
    }

    private static RopeSpec rope(ModelConfigJson c, int maxPositions) {
        JsonNode params = c.object("rope_parameters");
        JsonNode scaling = c.object("rope_scaling");
        JsonNode p = params != null ? params : scaling;
        String type = "default";
        if (p != null && (p.has("rope_type") || p.has("type"))) {
            type = (p.has("rope_type") ? p.get("rope_type") : p.get("type")).asText();
        }
        double theta;
        if (c.has("rope_theta")) {
            theta = c.requireDoubleInRange(1, MAX_ROPE_THETA, "rope_theta");
        } else if (params != null && params.has("rope_theta")) {
            theta = number(c, params, "rope_parameters.rope_theta", "rope_theta", 1, MAX_ROPE_THETA);
        } else {
            throw new ConfigException(c.where() + ": missing 'rope_theta' (or 'rope_parameters.rope_theta')");
        }
        switch (type) {
            case "default":
                return new RopeSpec(type, theta, 1, 0, 0, maxPositions, false, null);
            case "yarn": {
                String where = params != null ? "rope_parameters" : "rope_scaling";
                double factor = number(c, p, where + ".factor", "factor", 1, 1e6);
                double betaFast = p.has("beta_fast") ? number(c, p, where + ".beta_fast", "beta_fast", 1e-6, 1e6) : 32;
                double betaSlow = p.has("beta_slow") ? number(c, p, where + ".beta_slow", "beta_slow", 1e-6, 1e6) : 1;
                int original = p.has("original_max_position_embeddings")
                        ? (int) number(c, p, where + ".original_max_position_embeddings", "original_max_position_embeddings", 1, MAX_POSITIONS)
                        : maxPositions;
                boolean truncate = !p.has("truncate") || p.get("truncate").asBoolean(true);
                Double attention = p.has("attention_factor") && !p.get("attention_factor").isNull()
                        ? number(c, p, where + ".attention_factor", "attention_factor", 1e-6, 1e6) : null;
                if (p.has("mscale") && !p.get("mscale").isNull() || p.has("mscale_all_dim") && !p.get("mscale_all_dim").isNull()) {
                    throw new ConfigException(c.where() + ": " + where + ".mscale / mscale_all_dim (DeepSeek's YaRN variant) is not supported yet");
                }
                return new RopeSpec(type, theta, factor, betaFast, betaSlow, original, truncate, attention);
            }
            default:
                throw new ConfigException(c.where() + ": rope_type '" + type + "' is not supported (supported: default, yarn)");
        }
    }

    private static double number(ModelConfigJson c, JsonNode obj, String name, String key, double min, double max) {
        JsonNode t = obj.get(key);
        if (t == null || !t.isNumber() || !(t.asDouble() >= min && t.asDouble() <= max)) {
            throw new ConfigException(c.where() + ": " + name + " must be a number in [" + min + ", " + max + "], got " + t);
        }
        return t.asDouble();
    }

    /** The common keys as {@code inspect} prints them. */
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
        m.put("rms_norm_eps", rmsNormEps);
        m.put("rope_theta", rope.theta());
        if (!rope.type().equals("default")) {
            m.put("rope_type", rope.type());
            m.put("rope_factor", rope.factor());
        }
        m.put("tie_word_embeddings", tieWordEmbeddings);
        m.put("max_position_embeddings", maxPositionEmbeddings);
        return m;
    }

    public int qDim() {
        return nHeads * headDim;
    }

    public int kvDim() {
        return nKvHeads * headDim;
    }
}
