package dev.lockstep.moe;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * The {@code quantization_config} of a config.json: which pre-quantized checkpoints Lockstep loads (ModelOpt
 * NVFP4, compressed-tensors {@code nvfp4-pack-quantized}, gpt-oss MXFP4 experts) and a clear error for every other scheme, before
 * any tensor is read (a GPTQ or FP8 checkpoint must not fail later with a confusing dtype message).
 */
public final class CheckpointQuantization {
    private CheckpointQuantization() {
    }

    /** Returns a short description ("none", "modelopt NVFP4", "compressed-tensors nvfp4-pack-quantized"). */
    public static String check(ModelConfigJson config) {
        if (!config.has("quantization_config")) {
            return "none";
        }
        JsonNode q = config.object("quantization_config");
        String method = text(q, "quant_method");
        if (method == null && "modelopt".equals(text(q, "quant_library"))) {
            method = "modelopt"; // older ModelOpt exports
        }
        if (method == null) {
            throw new ConfigException(config.file() + ": quantization_config has no quant_method");
        }
        if (method.startsWith("modelopt")) {
            String algo = text(q, "quant_algo");
            if (algo == null || !algo.toUpperCase(java.util.Locale.ROOT).contains("FP4")) {
                throw new ConfigException(config.file() + ": quantization_config.quant_algo is " + algo
                        + "; Lockstep loads ModelOpt NVFP4 checkpoints only (quant_algo \"NVFP4\")");
            }
            return "modelopt " + algo;
        }
        if (method.equals("mxfp4")) {
            // HF's gpt-oss MXFP4 layout (*_blocks / *_scales experts); a family without MXFP4 experts finds no such
            // tensors and fails naming the tensor it expected
            JsonNode type = config.raw("model_type");
            if (type == null || !"gpt_oss".equals(type.asText())) {
                throw new ConfigException(config.where() + ": quantization_config.quant_method \"mxfp4\" is supported for gpt_oss only");
            }
            return "mxfp4";
        }
        if (method.equals("compressed-tensors")) {
            String format = text(q, "format");
            if (!"nvfp4-pack-quantized".equals(format)) {
                throw new ConfigException(config.file() + ": compressed-tensors format is " + format
                        + "; Lockstep loads \"nvfp4-pack-quantized\" only");
            }
            return "compressed-tensors " + format;
        }
        throw new ConfigException(config.file() + ": quantization_config.quant_method \"" + method
                + "\" is not supported (Lockstep loads unquantized checkpoints, ModelOpt NVFP4, compressed-tensors nvfp4-pack-quantized and gpt-oss mxfp4)");
    }

    private static String text(JsonNode q, String key) {
        JsonNode n = q.get(key);
        return n == null || !n.isTextual() ? null : n.asText();
    }
}
