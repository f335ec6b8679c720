package dev.lockstep.moe.qwen3;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lockstep.memory.Checkpoint;
import dev.lockstep.memory.DType;
import dev.lockstep.memory.Json;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.memory.Progress;
import dev.lockstep.memory.SafetensorsWriter;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;

/**
 * Writes a synthetic {@code qwen3_moe} checkpoint at real layer shapes (e.g. Qwen3-30B-A3B's with fewer layers),
 * for benchmarks and load tests: standard HF layout (bf16, sharded safetensors with an index, config.json),
 * a tokenizer copied from a real model. Matrices are approximately N(0, 1/fan_in) (Irwin-Hall sum of four
 * uniforms, scaled: bounded at 3.46 standard deviations, far cheaper than Gaussian sampling), norms are 1.
 * Each tensor has its own seed derived from {@code seed} and its name, so the bytes do not depend on the order
 * or the threads that generate them. Written to a temporary directory and renamed when complete.
 */
public final class Qwen3MoeSynthesizer {
    /** Shape of the synthetic model. */
    public record Shape(int layers, int hidden, int experts, int topK, int moeFf, int heads, int kvHeads, int headDim, int vocab) {
        public long parameters() {
            long attention = (long) hidden * headDim * (2L * heads + 2L * kvHeads) + 2L * headDim;
            long moe = (long) experts * 3 * moeFf * hidden + (long) experts * hidden;
            return 2L * vocab * hidden + hidden + layers * (attention + moe + 2L * hidden);
        }
    }

    private static final long SHARD_BYTES = 2L << 30;

    private Qwen3MoeSynthesizer() {
    }

    private record Tensor(String name, long[] shape, boolean norm) {
        long bytes() {
            long n = 2;
            for (long d : shape) {
                n *= d;
            }
            return n;
        }
    }

    public static void write(Shape s, long seed, Path tokenizerFrom, Path out, Progress progress) {
        if (Files.exists(out)) {
            throw new LockstepException(out + ": already exists; give a new directory");
        }
        if (s.heads() % s.kvHeads() != 0) {
            throw new IllegalArgumentException("--heads (" + s.heads() + ") must be a multiple of --kv-heads (" + s.kvHeads() + ")");
        }
        if (s.topK() > s.experts()) {
            throw new IllegalArgumentException("--top-k (" + s.topK() + ") exceeds --experts (" + s.experts() + ")");
        }
        Path tokenizer = tokenizerFrom.resolve("tokenizer.json");
        if (!Files.isRegularFile(tokenizer)) {
            throw new LockstepException(tokenizerFrom + ": no tokenizer.json to copy");
        }
        Path parent = out.toAbsolutePath().getParent();
        Path tmp = dev.lockstep.memory.PartialDirectory.temporaryFor(out);
        try {
            Files.createDirectories(tmp);
            List<Tensor> tensors = tensors(s);
            List<List<Tensor>> shards = new ArrayList<>();
            long inShard = 0;
            for (Tensor t : tensors) {
                if (shards.isEmpty() || (inShard > 0 && inShard + t.bytes() > SHARD_BYTES)) {
                    shards.add(new ArrayList<>());
                    inShard = 0;
                }
                shards.getLast().add(t);
                inShard += t.bytes();
            }
            long total = tensors.stream().mapToLong(Tensor::bytes).sum(), done = 0;
            Map<String, String> weightMap = new TreeMap<>();
            int threads = Math.max(1, Runtime.getRuntime().availableProcessors());
            try (ExecutorService pool = Executors.newFixedThreadPool(threads)) {
                for (int i = 0; i < shards.size(); i++) {
                    String file = String.format("model-%05d-of-%05d.safetensors", i + 1, shards.size());
                    List<Tensor> shard = shards.get(i);
                    List<SafetensorsWriter.Entry> entries = shard.stream()
                            .map(t -> new SafetensorsWriter.Entry(t.name(), DType.BF16, t.shape())).toList();
                    try (SafetensorsWriter w = SafetensorsWriter.create(tmp.resolve(file), entries, Map.of("format", "pt"))) {
                        // generate ahead on the pool (at most `threads` tensors in flight), write in order
                        List<Future<byte[]>> pending = new ArrayList<>();
                        int next = 0;
                        for (Tensor t : shard) {
                            while (next < shard.size() && pending.size() < threads + 1) {
                                Tensor g = shard.get(next++);
                                pending.add(pool.submit(() -> generate(g, seed)));
                            }
                            w.write(t.name(), pending.removeFirst().get());
                            weightMap.put(t.name(), file);
                            done += t.bytes();
                            progress.update(done, total);
                        }
                    }
                }
            } catch (java.util.concurrent.ExecutionException e) {
                throw new IllegalStateException(e.getCause());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new LockstepException("interrupted");
            }
            ObjectNode index = Json.MAPPER.createObjectNode();
            index.putObject("metadata").put("total_size", total);
            ObjectNode map = index.putObject("weight_map");
            weightMap.forEach(map::put);
            Files.writeString(tmp.resolve(Checkpoint.INDEX_FILE), index.toPrettyString());
            Files.writeString(tmp.resolve("config.json"), config(s).toPrettyString());
            Files.copy(tokenizer, tmp.resolve("tokenizer.json"));
            for (String extra : List.of("tokenizer_config.json", "special_tokens_map.json", "generation_config.json")) {
                if (Files.isRegularFile(tokenizerFrom.resolve(extra))) {
                    Files.copy(tokenizerFrom.resolve(extra), tmp.resolve(extra));
                }
            }
            Files.move(tmp, out, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            dev.lockstep.memory.PartialDirectory.deleteQuietly(tmp);
            throw new UncheckedIOException(out + ": " + e.getMessage(), e);
        } catch (RuntimeException | Error e) {
            dev.lockstep.memory.PartialDirectory.deleteQuietly(tmp);
            throw e;
        }
    }

    private static List<Tensor> tensors(Shape s) {
        List<Tensor> t = new ArrayList<>();
        int h = s.hidden(), q = s.heads() * s.headDim(), kv = s.kvHeads() * s.headDim();
        t.add(new Tensor("model.embed_tokens.weight", new long[]{s.vocab(), h}, false));
        for (int l = 0; l < s.layers(); l++) {
            String p = "model.layers." + l + ".";
            t.add(new Tensor(p + "input_layernorm.weight", new long[]{h}, true));
            t.add(new Tensor(p + "self_attn.q_proj.weight", new long[]{q, h}, false));
            t.add(new Tensor(p + "self_attn.k_proj.weight", new long[]{kv, h}, false));
            t.add(new Tensor(p + "self_attn.v_proj.weight", new long[]{kv, h}, false));
            t.add(new Tensor(p + "self_attn.o_proj.weight", new long[]{h, q}, false));
            t.add(new Tensor(p + "self_attn.q_norm.weight", new long[]{s.headDim()}, true));
            t.add(new Tensor(p + "self_attn.k_norm.weight", new long[]{s.headDim()}, true));
            t.add(new Tensor(p + "post_attention_layernorm.weight", new long[]{h}, true));
            t.add(new Tensor(p + "mlp.gate.weight", new long[]{s.experts(), h}, false));
            for (int e = 0; e < s.experts(); e++) {
                String ep = p + "mlp.experts." + e + ".";
                t.add(new Tensor(ep + "gate_proj.weight", new long[]{s.moeFf(), h}, false));
                t.add(new Tensor(ep + "up_proj.weight", new long[]{s.moeFf(), h}, false));
                t.add(new Tensor(ep + "down_proj.weight", new long[]{h, s.moeFf()}, false));
            }
        }
        t.add(new Tensor("model.norm.weight", new long[]{h}, true));
        t.add(new Tensor("lm_head.weight", new long[]{s.vocab(), h}, false));
        return t;
    }

    /** bf16 bytes of one tensor: norms 1.0, matrices ~ N(0, 1/fan_in) (fan_in = the last dimension). */
    private static byte[] generate(Tensor t, long seed) {
        byte[] out = new byte[Math.toIntExact(t.bytes())];
        int n = out.length / 2;
        if (t.norm()) {
            for (int i = 0; i < n; i++) {
                out[2 * i] = (byte) 0x80;   // 1.0 = 0x3F80
                out[2 * i + 1] = (byte) 0x3f;
            }
            return out;
        }
        SplittableRandom r = new SplittableRandom(seed * 0x9E3779B97F4A7C15L ^ t.name().hashCode());
        // sum of four 16-bit uniforms: mean 2 * 65535, variance 4 * (65536^2 - 1) / 12
        double sd = 1 / Math.sqrt(t.shape()[t.shape().length - 1]);
        float scale = (float) (sd / Math.sqrt(4 * (65536.0 * 65536.0 - 1) / 12));
        float mean = 2 * 65535f;
        for (int i = 0; i < n; i++) {
            long bits = r.nextLong();
            float sum = (bits & 0xffff) + ((bits >>> 16) & 0xffff) + ((bits >>> 32) & 0xffff) + (bits >>> 48);
            int f = Float.floatToRawIntBits((sum - mean) * scale);
            int bf = (f + 0x7fff + ((f >>> 16) & 1)) >>> 16; // round to nearest even
            out[2 * i] = (byte) bf;
            out[2 * i + 1] = (byte) (bf >>> 8);
        }
        return out;
    }

    private static ObjectNode config(Shape s) {
        ObjectNode c = Json.MAPPER.createObjectNode();
        c.putArray("architectures").add("Qwen3MoeForCausalLM");
        c.put("attention_bias", false).put("attention_dropout", 0.0).put("bos_token_id", 0).put("decoder_sparse_step", 1)
                .put("dtype", "bfloat16").put("eos_token_id", 0).put("head_dim", s.headDim()).put("hidden_act", "silu")
                .put("hidden_size", s.hidden()).put("initializer_range", 0.02).put("intermediate_size", 6144)
                .put("max_position_embeddings", 40960);
        c.putArray("mlp_only_layers");
        c.put("model_type", "qwen3_moe").put("moe_intermediate_size", s.moeFf()).put("norm_topk_prob", true)
                .put("num_attention_heads", s.heads()).put("num_experts", s.experts()).put("num_experts_per_tok", s.topK())
                .put("num_hidden_layers", s.layers()).put("num_key_value_heads", s.kvHeads()).put("rms_norm_eps", 1e-6)
                .put("rope_theta", 1000000.0).put("tie_word_embeddings", false).put("use_cache", true)
                .put("use_sliding_window", false).put("vocab_size", s.vocab());
        return c;
    }

}
