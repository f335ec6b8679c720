package dev.lockstep.verify;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;

/**
 * Test helper: a tiny random {@code qwen3_moe} checkpoint in standard HF layout (config.json, two bf16
 * safetensors shards and their index), small enough to load thousands of times in a test.
 */
final class TinyModel {
    static final int VOCAB = 256, HIDDEN = 32, LAYERS = 2, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 8, EXPERTS = 4, TOP_K = 2,
            MOE_INTER = 16, INTER = 32;

    private TinyModel() {
    }

    static ObjectNode config() {
        ObjectNode c = new ObjectMapper().createObjectNode();
        c.putArray("architectures").add("Qwen3MoeForCausalLM");
        c.put("model_type", "qwen3_moe");
        c.put("vocab_size", VOCAB);
        c.put("hidden_size", HIDDEN);
        c.put("num_hidden_layers", LAYERS);
        c.put("num_attention_heads", HEADS);
        c.put("num_key_value_heads", KV_HEADS);
        c.put("head_dim", HEAD_DIM);
        c.put("num_experts", EXPERTS);
        c.put("num_experts_per_tok", TOP_K);
        c.put("moe_intermediate_size", MOE_INTER);
        c.put("intermediate_size", INTER);
        c.put("norm_topk_prob", true);
        c.put("rms_norm_eps", 1e-6);
        c.put("rope_theta", 10000.0);
        c.put("max_position_embeddings", 512);
        c.put("tie_word_embeddings", false);
        c.put("eos_token_id", 0);
        return c;
    }

    /** Writes the model into {@code dir}; the same seed gives the same bytes. */
    static Path write(Path dir, long seed) {
        try {
            Files.createDirectories(dir);
            Files.writeString(dir.resolve("config.json"), config().toPrettyString());
            SplittableRandom r = new SplittableRandom(seed);
            SafetensorsWriter a = new SafetensorsWriter(), b = new SafetensorsWriter();
            a.put("model.embed_tokens.weight", "BF16", new long[]{VOCAB, HIDDEN}, bf16(r, VOCAB * HIDDEN, 1.0f));
            for (int l = 0; l < LAYERS; l++) {
                String p = "model.layers." + l + ".";
                SafetensorsWriter w = l == 0 ? a : b;
                w.put(p + "input_layernorm.weight", "BF16", new long[]{HIDDEN}, ones(HIDDEN));
                w.put(p + "post_attention_layernorm.weight", "BF16", new long[]{HIDDEN}, ones(HIDDEN));
                w.put(p + "self_attn.q_proj.weight", "BF16", new long[]{HEADS * HEAD_DIM, HIDDEN}, bf16(r, HEADS * HEAD_DIM * HIDDEN, 0.2f));
                w.put(p + "self_attn.k_proj.weight", "BF16", new long[]{KV_HEADS * HEAD_DIM, HIDDEN}, bf16(r, KV_HEADS * HEAD_DIM * HIDDEN, 0.2f));
                w.put(p + "self_attn.v_proj.weight", "BF16", new long[]{KV_HEADS * HEAD_DIM, HIDDEN}, bf16(r, KV_HEADS * HEAD_DIM * HIDDEN, 0.2f));
                w.put(p + "self_attn.o_proj.weight", "BF16", new long[]{HIDDEN, HEADS * HEAD_DIM}, bf16(r, HEADS * HEAD_DIM * HIDDEN, 0.2f));
                w.put(p + "self_attn.q_norm.weight", "BF16", new long[]{HEAD_DIM}, ones(HEAD_DIM));
                w.put(p + "self_attn.k_norm.weight", "BF16", new long[]{HEAD_DIM}, ones(HEAD_DIM));
                w.put(p + "mlp.gate.weight", "BF16", new long[]{EXPERTS, HIDDEN}, bf16(r, EXPERTS * HIDDEN, 0.2f));
                for (int e = 0; e < EXPERTS; e++) {
                    String ep = p + "mlp.experts." + e + ".";
                    w.put(ep + "gate_proj.weight", "BF16", new long[]{MOE_INTER, HIDDEN}, bf16(r, MOE_INTER * HIDDEN, 0.2f));
                    w.put(ep + "up_proj.weight", "BF16", new long[]{MOE_INTER, HIDDEN}, bf16(r, MOE_INTER * HIDDEN, 0.2f));
                    w.put(ep + "down_proj.weight", "BF16", new long[]{HIDDEN, MOE_INTER}, bf16(r, MOE_INTER * HIDDEN, 0.2f));
                }
            }
            b.put("model.norm.weight", "BF16", new long[]{HIDDEN}, ones(HIDDEN));
            b.put("lm_head.weight", "BF16", new long[]{VOCAB, HIDDEN}, bf16(r, VOCAB * HIDDEN, 0.2f));
            String shardA = "model-00001-of-00002.safetensors", shardB = "model-00002-of-00002.safetensors";
            a.write(dir.resolve(shardA));
            b.write(dir.resolve(shardB));
            ObjectNode index = new ObjectMapper().createObjectNode();
            index.putObject("metadata").put("total_size", 0);
            ObjectNode map = index.putObject("weight_map");
            a.names().forEach(n -> map.put(n, shardA));
            b.names().forEach(n -> map.put(n, shardB));
            Files.writeString(dir.resolve("model.safetensors.index.json"), index.toPrettyString());
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static byte[] bf16(SplittableRandom r, int n, float scale) {
        ByteBuffer b = ByteBuffer.allocate(2 * n).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; i++) {
            float v = (float) (r.nextDouble(-1, 1) * scale);
            b.putShort((short) (Float.floatToRawIntBits(v) >>> 16));
        }
        return b.array();
    }

    static byte[] ones(int n) {
        ByteBuffer b = ByteBuffer.allocate(2 * n).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < n; i++) {
            b.putShort((short) (Float.floatToRawIntBits(1.0f) >>> 16));
        }
        return b.array();
    }
}
