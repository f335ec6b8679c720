package dev.lockstep.verify;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * Test helper: a real {@code qwen3_moe} checkpoint (config, bf16 safetensors, BPE tokenizer.json, a chat template)
 * whose greedy output is fixed by construction, for end-to-end tests that need a model to say something exact (a
 * tool call). One layer whose attention and experts write zeros to the residual stream (o_proj and down_proj are 0),
 * so the last hidden state is the current token's embedding; embeddings are one-hot and lm_head maps each token's
 * one-hot to its successor in {@link #PIECES}: after the generation prompt's {@code <|assistant|>} the model writes
 * the pieces in order, then its end-of-sequence token. Nothing in the engine knows it is special.
 */
final class ScriptedModel {
    /** What the model says, one token per piece (added tokens of the tokenizer, joined by the Fuse decoder). */
    static final List<String> PIECES = List.of("<tool_call>\n{\"name\": \"", "get_weather", "\", \"arguments\": {\"city\": \"", "Paris",
            "\"}}\n</tool_call>");
    static final String TEMPLATE = "{#- replies with <tool_call>{json}</tool_call>, as Hermes/Qwen models do -#}\n"
            + "{%- if tools %}tools: {{ tools | tojson }}\n{% endif %}"
            + "{%- for m in messages %}{{ m.role }}: {% if m.tool_calls %}{{ m.tool_calls | tojson }}{% else %}{{ m.content }}{% endif %}\n{% endfor %}"
            + "{%- if add_generation_prompt %}<|assistant|>{% endif %}";
    private static final int VOCAB = 16, HIDDEN = 16, HEADS = 2, KV_HEADS = 1, HEAD_DIM = 8, EXPERTS = 2, MOE_INTER = 8;
    private static final int EOS = 0, UNK = 1, ASSISTANT = 2, FIRST_PIECE = 3;

    private ScriptedModel() {
    }

    static Path write(Path dir) {
        try {
            Files.createDirectories(dir);
            ObjectMapper json = new ObjectMapper();
            ObjectNode c = json.createObjectNode();
            c.putArray("architectures").add("Qwen3MoeForCausalLM");
            c.put("model_type", "qwen3_moe").put("vocab_size", VOCAB).put("hidden_size", HIDDEN).put("num_hidden_layers", 1)
                    .put("num_attention_heads", HEADS).put("num_key_value_heads", KV_HEADS).put("head_dim", HEAD_DIM)
                    .put("num_experts", EXPERTS).put("num_experts_per_tok", 1).put("moe_intermediate_size", MOE_INTER)
                    .put("intermediate_size", MOE_INTER).put("norm_topk_prob", true).put("rms_norm_eps", 1e-6).put("rope_theta", 10000.0)
                    .put("max_position_embeddings", 1024).put("tie_word_embeddings", false).put("eos_token_id", EOS);
            Files.writeString(dir.resolve("config.json"), c.toPrettyString());
            Files.writeString(dir.resolve("tokenizer_config.json"), json.createObjectNode().put("eos_token", "<|eos|>")
                    .put("add_bos_token", false).put("chat_template", TEMPLATE).toPrettyString());
            Files.writeString(dir.resolve("tokenizer.json"), tokenizer(json).toPrettyString());

            float[] embed = new float[VOCAB * HIDDEN];
            float[] head = new float[VOCAB * HIDDEN];
            for (int t = 0; t < VOCAB; t++) {
                embed[t * HIDDEN + t] = 1f; // one-hot
                int next = t == ASSISTANT ? FIRST_PIECE : t >= FIRST_PIECE && t < FIRST_PIECE + PIECES.size() - 1 ? t + 1 : EOS;
                head[next * HIDDEN + t] = 10f; // logit of the successor
            }
            SafetensorsWriter w = new SafetensorsWriter();
            w.put("model.embed_tokens.weight", "BF16", new long[] {VOCAB, HIDDEN}, bf16(embed));
            String p = "model.layers.0.";
            w.put(p + "input_layernorm.weight", "BF16", new long[] {HIDDEN}, TinyModel.ones(HIDDEN));
            w.put(p + "post_attention_layernorm.weight", "BF16", new long[] {HIDDEN}, TinyModel.ones(HIDDEN));
            w.put(p + "self_attn.q_proj.weight", "BF16", new long[] {HEADS * HEAD_DIM, HIDDEN}, bf16(new float[HEADS * HEAD_DIM * HIDDEN]));
            w.put(p + "self_attn.k_proj.weight", "BF16", new long[] {KV_HEADS * HEAD_DIM, HIDDEN}, bf16(new float[KV_HEADS * HEAD_DIM * HIDDEN]));
            w.put(p + "self_attn.v_proj.weight", "BF16", new long[] {KV_HEADS * HEAD_DIM, HIDDEN}, bf16(new float[KV_HEADS * HEAD_DIM * HIDDEN]));
            w.put(p + "self_attn.o_proj.weight", "BF16", new long[] {HIDDEN, HEADS * HEAD_DIM}, bf16(new float[HIDDEN * HEADS * HEAD_DIM]));
            w.put(p + "self_attn.q_norm.weight", "BF16", new long[] {HEAD_DIM}, TinyModel.ones(HEAD_DIM));
            w.put(p + "self_attn.k_norm.weight", "BF16", new long[] {HEAD_DIM}, TinyModel.ones(HEAD_DIM));
            w.put(p + "mlp.gate.weight", "BF16", new long[] {EXPERTS, HIDDEN}, bf16(new float[EXPERTS * HIDDEN]));
            for (int e = 0; e < EXPERTS; e++) {
                String ep = p + "mlp.experts." + e + ".";
                w.put(ep + "gate_proj.weight", "BF16", new long[] {MOE_INTER, HIDDEN}, bf16(new float[MOE_INTER * HIDDEN]));
                w.put(ep + "up_proj.weight", "BF16", new long[] {MOE_INTER, HIDDEN}, bf16(new float[MOE_INTER * HIDDEN]));
                w.put(ep + "down_proj.weight", "BF16", new long[] {HIDDEN, MOE_INTER}, bf16(new float[HIDDEN * MOE_INTER]));
            }
            w.put("model.norm.weight", "BF16", new long[] {HIDDEN}, TinyModel.ones(HIDDEN));
            w.put("lm_head.weight", "BF16", new long[] {VOCAB, HIDDEN}, bf16(head));
            w.write(dir.resolve("model.safetensors"));
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** BPE without merges over two base tokens; the generation prompt and every piece are added tokens. */
    private static ObjectNode tokenizer(ObjectMapper json) {
        ObjectNode t = json.createObjectNode();
        t.put("version", "1.0");
        t.putNull("truncation");
        t.putNull("padding");
        ArrayNode added = t.putArray("added_tokens");
        added(added, EOS, "<|eos|>", true);
        added(added, ASSISTANT, "<|assistant|>", true);
        for (int i = 0; i < PIECES.size(); i++) {
            added(added, FIRST_PIECE + i, PIECES.get(i), false);
        }
        t.putNull("normalizer");
        t.putObject("pre_tokenizer").put("type", "Whitespace");
        t.putNull("post_processor");
        t.putObject("decoder").put("type", "Fuse");
        ObjectNode m = t.putObject("model");
        m.put("type", "BPE").putNull("dropout").put("unk_token", "[UNK]").put("fuse_unk", true).put("byte_fallback", false);
        m.putObject("vocab").put("<|eos|>", EOS).put("[UNK]", UNK);
        m.putArray("merges");
        return t;
    }

    private static void added(ArrayNode a, int id, String content, boolean special) {
        a.addObject().put("id", id).put("content", content).put("single_word", false).put("lstrip", false).put("rstrip", false)
                .put("normalized", false).put("special", special);
    }

    private static byte[] bf16(float[] v) {
        ByteBuffer b = ByteBuffer.allocate(2 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float f : v) {
            b.putShort((short) (Float.floatToRawIntBits(f) >>> 16));
        }
        return b.array();
    }
}
