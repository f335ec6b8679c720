package dev.lockstep.moe.synth;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lockstep.memory.Json;
import dev.lockstep.moe.synth.CheckpointSynthesizer.Fill;
import dev.lockstep.moe.synth.CheckpointSynthesizer.Tensor;

import java.util.ArrayList;
import java.util.List;

/**
 * Synthetic checkpoints at each family's real layer shapes (with {@code layers} layers and the given vocabulary):
 * the config.json keys and the tensors (HF names and layouts) the family's loader declares. Shapes, from the models'
 * config.json: qwen3_moe Qwen3-30B-A3B, mixtral Mixtral-8x7B, qwen2_moe Qwen1.5-MoE-A2.7B, olmoe OLMoE-1B-7B,
 * granitemoe granite-3.0-3b-a800m, gpt_oss gpt-oss-20b (experts MXFP4, as it ships), deepseek_v3 Moonlight-16B-A3B.
 */
public final class FamilySynth {
    /** What to write: the family, its config.json and its tensors. */
    public record Plan(String family, ObjectNode config, List<Tensor> tensors) {
        /** Parameters (an MXFP4 block byte holds two, a scale byte none). */
        public long parameters() {
            long p = 0;
            for (Tensor t : tensors) {
                p += switch (t.fill()) {
                    case MX_BLOCKS -> 2 * t.elements();
                    case MX_SCALES -> 0;
                    default -> t.elements();
                };
            }
            return p;
        }

        public long bytes() {
            return tensors.stream().mapToLong(Tensor::bytes).sum();
        }
    }

    public static final List<String> FAMILIES = List.of("qwen3_moe", "mixtral", "qwen2_moe", "olmoe", "granitemoe", "gpt_oss", "deepseek_v3");

    private FamilySynth() {
    }

    /** The plan for {@code family}; an unknown family is an IllegalArgumentException listing the known ones. */
    public static Plan plan(String family, int layers, int vocab) {
        if (layers < 1 || vocab < 1) {
            throw new IllegalArgumentException("--layers and --vocab must be >= 1");
        }
        return switch (family) {
            case "qwen3_moe" -> qwen3(layers, vocab, 2048, 128, 8, 768, 32, 4, 128);
            case "mixtral" -> mixtral(layers, vocab);
            case "qwen2_moe" -> qwen2(layers, vocab);
            case "olmoe" -> olmoe(layers, vocab);
            case "granitemoe" -> granite(layers, vocab);
            case "gpt_oss" -> gptOss(layers, vocab);
            case "deepseek_v3" -> deepseek(layers, vocab);
            default -> throw new IllegalArgumentException("unknown family '" + family + "' (known: " + String.join(", ", FAMILIES) + ")");
        };
    }

    private static ObjectNode base(String type, String arch, int layers, int vocab, int hidden, int heads, int kvHeads, int experts, int topK) {
        ObjectNode c = Json.MAPPER.createObjectNode();
        c.putArray("architectures").add(arch);
        c.put("model_type", type).put("bos_token_id", 0).put("eos_token_id", 0).put("dtype", "bfloat16").put("hidden_act", "silu")
                .put("hidden_size", hidden).put("num_hidden_layers", layers).put("num_attention_heads", heads)
                .put("num_key_value_heads", kvHeads).put("num_experts_per_tok", topK).put("vocab_size", vocab)
                .put("rms_norm_eps", 1e-6).put("max_position_embeddings", 32768).put("tie_word_embeddings", false);
        c.put(type.equals("deepseek_v3") ? "n_routed_experts" : type.equals("qwen3_moe") || type.equals("qwen2_moe") || type.equals("olmoe")
                ? "num_experts" : "num_local_experts", experts);
        return c;
    }

    private static void rope(ObjectNode c, double theta) {
        c.putObject("rope_parameters").put("rope_type", "default").put("rope_theta", theta);
    }

    private static Tensor m(String name, long... shape) {
        return new Tensor(name, shape, Fill.MATRIX);
    }

    private static Tensor ones(String name, long n) {
        return new Tensor(name, new long[]{n}, Fill.ONES);
    }

    private static Tensor zeros(String name, long... shape) {
        return new Tensor(name, shape, Fill.ZEROS);
    }

    /** Embedding, final norm, lm_head around the layers. */
    private static List<Tensor> wrap(List<Tensor> layers, int vocab, int hidden) {
        List<Tensor> t = new ArrayList<>();
        t.add(m("model.embed_tokens.weight", vocab, hidden));
        t.addAll(layers);
        t.add(ones("model.norm.weight", hidden));
        t.add(m("lm_head.weight", vocab, hidden));
        return t;
    }

    private static void attention(List<Tensor> t, String p, int hidden, int heads, int kvHeads, int headDim, boolean qkvBias, boolean oBias) {
        int q = heads * headDim, kv = kvHeads * headDim;
        t.add(m(p + "self_attn.q_proj.weight", q, hidden));
        t.add(m(p + "self_attn.k_proj.weight", kv, hidden));
        t.add(m(p + "self_attn.v_proj.weight", kv, hidden));
        t.add(m(p + "self_attn.o_proj.weight", hidden, q));
        if (qkvBias) {
            t.add(zeros(p + "self_attn.q_proj.bias", q));
            t.add(zeros(p + "self_attn.k_proj.bias", kv));
            t.add(zeros(p + "self_attn.v_proj.bias", kv));
        }
        if (oBias) {
            t.add(zeros(p + "self_attn.o_proj.bias", hidden));
        }
    }

    private static void experts(List<Tensor> t, String prefix, int experts, int ff, int hidden, String gate, String up, String down) {
        for (int e = 0; e < experts; e++) {
            t.add(m(prefix + e + "." + gate + ".weight", ff, hidden));
            t.add(m(prefix + e + "." + up + ".weight", ff, hidden));
            t.add(m(prefix + e + "." + down + ".weight", hidden, ff));
        }
    }

    private static void mlp(List<Tensor> t, String p, int ff, int hidden) {
        t.add(m(p + "gate_proj.weight", ff, hidden));
        t.add(m(p + "up_proj.weight", ff, hidden));
        t.add(m(p + "down_proj.weight", hidden, ff));
    }

    /** qwen3_moe at the given shape (the synth command's qwen3 options). */
    public static Plan qwen3(int layers, int vocab, int hidden, int experts, int topK, int moeFf, int heads, int kvHeads, int headDim) {
        if (heads % kvHeads != 0) {
            throw new IllegalArgumentException("--heads (" + heads + ") must be a multiple of --kv-heads (" + kvHeads + ")");
        }
        if (topK > experts) {
            throw new IllegalArgumentException("--top-k (" + topK + ") exceeds --experts (" + experts + ")");
        }
        ObjectNode c = base("qwen3_moe", "Qwen3MoeForCausalLM", layers, vocab, hidden, heads, kvHeads, experts, topK);
        c.put("head_dim", headDim).put("intermediate_size", 6144).put("moe_intermediate_size", moeFf).put("norm_topk_prob", true)
                .put("decoder_sparse_step", 1).put("attention_bias", false).put("use_sliding_window", false).put("max_position_embeddings", 40960);
        c.putArray("mlp_only_layers");
        c.put("rope_theta", 1000000.0);
        List<Tensor> t = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            String p = "model.layers." + l + ".";
            t.add(ones(p + "input_layernorm.weight", hidden));
            attention(t, p, hidden, heads, kvHeads, headDim, false, false);
            t.add(ones(p + "self_attn.q_norm.weight", headDim));
            t.add(ones(p + "self_attn.k_norm.weight", headDim));
            t.add(ones(p + "post_attention_layernorm.weight", hidden));
            t.add(m(p + "mlp.gate.weight", experts, hidden));
            experts(t, p + "mlp.experts.", experts, moeFf, hidden, "gate_proj", "up_proj", "down_proj");
        }
        return new Plan("qwen3_moe", c, wrap(t, vocab, hidden));
    }

    private static Plan mixtral(int layers, int vocab) {
        int hidden = 4096, experts = 8, ff = 14336, heads = 32, kv = 8, hd = 128;
        ObjectNode c = base("mixtral", "MixtralForCausalLM", layers, vocab, hidden, heads, kv, experts, 2);
        c.put("head_dim", hd).put("intermediate_size", ff).put("rms_norm_eps", 1e-5);
        rope(c, 1e6);
        List<Tensor> t = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            String p = "model.layers." + l + ".";
            t.add(ones(p + "input_layernorm.weight", hidden));
            attention(t, p, hidden, heads, kv, hd, false, false);
            t.add(ones(p + "post_attention_layernorm.weight", hidden));
            t.add(m(p + "block_sparse_moe.gate.weight", experts, hidden));
            experts(t, p + "block_sparse_moe.experts.", experts, ff, hidden, "w1", "w3", "w2");
        }
        return new Plan("mixtral", c, wrap(t, vocab, hidden));
    }

    private static Plan qwen2(int layers, int vocab) {
        int hidden = 2048, experts = 60, ff = 1408, shared = 5632, heads = 16, hd = 128;
        ObjectNode c = base("qwen2_moe", "Qwen2MoeForCausalLM", layers, vocab, hidden, heads, heads, experts, 4);
        c.put("intermediate_size", 5632).put("moe_intermediate_size", ff).put("shared_expert_intermediate_size", shared)
                .put("norm_topk_prob", false).put("decoder_sparse_step", 1).put("use_sliding_window", false).put("qkv_bias", true);
        c.putArray("mlp_only_layers");
        rope(c, 1e6);
        List<Tensor> t = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            String p = "model.layers." + l + ".";
            t.add(ones(p + "input_layernorm.weight", hidden));
            attention(t, p, hidden, heads, heads, hd, true, false);
            t.add(ones(p + "post_attention_layernorm.weight", hidden));
            t.add(m(p + "mlp.gate.weight", experts, hidden));
            experts(t, p + "mlp.experts.", experts, ff, hidden, "gate_proj", "up_proj", "down_proj");
            mlp(t, p + "mlp.shared_expert.", shared, hidden);
            t.add(m(p + "mlp.shared_expert_gate.weight", 1, hidden));
        }
        return new Plan("qwen2_moe", c, wrap(t, vocab, hidden));
    }

    private static Plan olmoe(int layers, int vocab) {
        int hidden = 2048, experts = 64, ff = 1024, heads = 16, hd = 128;
        ObjectNode c = base("olmoe", "OlmoeForCausalLM", layers, vocab, hidden, heads, heads, experts, 8);
        c.put("intermediate_size", ff).put("norm_topk_prob", false).put("rms_norm_eps", 1e-5).put("attention_bias", false);
        rope(c, 1e4);
        List<Tensor> t = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            String p = "model.layers." + l + ".";
            t.add(ones(p + "input_layernorm.weight", hidden));
            attention(t, p, hidden, heads, heads, hd, false, false);
            t.add(ones(p + "self_attn.q_norm.weight", (long) heads * hd));
            t.add(ones(p + "self_attn.k_norm.weight", (long) heads * hd));
            t.add(ones(p + "post_attention_layernorm.weight", hidden));
            t.add(m(p + "mlp.gate.weight", experts, hidden));
            experts(t, p + "mlp.experts.", experts, ff, hidden, "gate_proj", "up_proj", "down_proj");
        }
        return new Plan("olmoe", c, wrap(t, vocab, hidden));
    }

    private static Plan granite(int layers, int vocab) {
        int hidden = 1536, experts = 40, ff = 512, heads = 24, kv = 8, hd = 64;
        ObjectNode c = base("granitemoe", "GraniteMoeForCausalLM", layers, vocab, hidden, heads, kv, experts, 8);
        c.put("intermediate_size", ff).put("embedding_multiplier", 12.0).put("attention_multiplier", 0.015625)
                .put("residual_multiplier", 0.22).put("logits_scaling", 6.0).put("attention_bias", false);
        rope(c, 1e4);
        List<Tensor> t = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            String p = "model.layers." + l + ".";
            t.add(ones(p + "input_layernorm.weight", hidden));
            attention(t, p, hidden, heads, kv, hd, false, false);
            t.add(ones(p + "post_attention_layernorm.weight", hidden));
            t.add(m(p + "block_sparse_moe.router.layer.weight", experts, hidden));
            t.add(m(p + "block_sparse_moe.input_linear.weight", experts, 2L * ff, hidden));
            t.add(m(p + "block_sparse_moe.output_linear.weight", experts, hidden, ff));
        }
        return new Plan("granitemoe", c, wrap(t, vocab, hidden));
    }

    private static Plan gptOss(int layers, int vocab) {
        int hidden = 2880, experts = 32, ff = 2880, heads = 64, kv = 8, hd = 64;
        ObjectNode c = base("gpt_oss", "GptOssForCausalLM", layers, vocab, hidden, heads, kv, experts, 4);
        c.put("head_dim", hd).put("intermediate_size", ff).put("sliding_window", 128).put("attention_bias", true).put("swiglu_limit", 7.0)
                .put("max_position_embeddings", 131072).put("rms_norm_eps", 1e-5);
        var types = c.putArray("layer_types");
        for (int l = 0; l < layers; l++) {
            types.add(l % 2 == 0 ? "sliding_attention" : "full_attention");
        }
        c.putObject("rope_parameters").put("rope_type", "yarn").put("rope_theta", 150000.0).put("factor", 32.0).put("beta_fast", 32.0)
                .put("beta_slow", 1.0).put("original_max_position_embeddings", 4096).put("truncate", false);
        c.putObject("quantization_config").put("quant_method", "mxfp4");
        List<Tensor> t = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            String p = "model.layers." + l + ".";
            t.add(ones(p + "input_layernorm.weight", hidden));
            attention(t, p, hidden, heads, kv, hd, true, true);
            t.add(zeros(p + "self_attn.sinks", heads));
            t.add(ones(p + "post_attention_layernorm.weight", hidden));
            t.add(m(p + "mlp.router.weight", experts, hidden));
            t.add(zeros(p + "mlp.router.bias", experts));
            String e = p + "mlp.experts.";
            t.add(new Tensor(e + "gate_up_proj_blocks", new long[]{experts, 2L * ff, hidden / 32, 16}, Fill.MX_BLOCKS));
            t.add(new Tensor(e + "gate_up_proj_scales", new long[]{experts, 2L * ff, hidden / 32}, Fill.MX_SCALES));
            t.add(zeros(e + "gate_up_proj_bias", experts, 2L * ff));
            t.add(new Tensor(e + "down_proj_blocks", new long[]{experts, hidden, ff / 32, 16}, Fill.MX_BLOCKS));
            t.add(new Tensor(e + "down_proj_scales", new long[]{experts, hidden, ff / 32}, Fill.MX_SCALES));
            t.add(zeros(e + "down_proj_bias", experts, hidden));
        }
        return new Plan("gpt_oss", c, wrap(t, vocab, hidden));
    }

    private static Plan deepseek(int layers, int vocab) {
        int hidden = 2048, experts = 64, moeFf = 1408, shared = 2, ff = 11264, heads = 16, rank = 512, nope = 128, ropeDim = 64, v = 128;
        ObjectNode c = base("deepseek_v3", "DeepseekV3ForCausalLM", layers, vocab, hidden, heads, heads, experts, 6);
        c.put("kv_lora_rank", rank).put("qk_nope_head_dim", nope).put("qk_rope_head_dim", ropeDim).put("v_head_dim", v)
                .put("intermediate_size", ff).put("moe_intermediate_size", moeFf).put("n_shared_experts", shared)
                .put("first_k_dense_replace", 1).put("n_group", 1).put("topk_group", 1).put("routed_scaling_factor", 2.446)
                .put("norm_topk_prob", true).put("rope_interleave", true).put("attention_bias", false).put("rms_norm_eps", 1e-5)
                .put("scoring_func", "sigmoid").put("topk_method", "noaux_tc");
        c.putNull("q_lora_rank");
        rope(c, 50000.0);
        List<Tensor> t = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            String p = "model.layers." + l + ".", a = p + "self_attn.";
            t.add(ones(p + "input_layernorm.weight", hidden));
            t.add(m(a + "q_proj.weight", (long) heads * (nope + ropeDim), hidden));
            t.add(m(a + "kv_a_proj_with_mqa.weight", rank + ropeDim, hidden));
            t.add(ones(a + "kv_a_layernorm.weight", rank));
            t.add(m(a + "kv_b_proj.weight", (long) heads * (nope + v), rank));
            t.add(m(a + "o_proj.weight", hidden, (long) heads * v));
            t.add(ones(p + "post_attention_layernorm.weight", hidden));
            if (l < 1) {
                mlp(t, p + "mlp.", ff, hidden);
            } else {
                t.add(m(p + "mlp.gate.weight", experts, hidden));
                t.add(zeros(p + "mlp.gate.e_score_correction_bias", experts));
                experts(t, p + "mlp.experts.", experts, moeFf, hidden, "gate_proj", "up_proj", "down_proj");
                mlp(t, p + "mlp.shared_experts.", moeFf * shared, hidden);
            }
        }
        return new Plan("deepseek_v3", c, wrap(t, vocab, hidden));
    }
}
