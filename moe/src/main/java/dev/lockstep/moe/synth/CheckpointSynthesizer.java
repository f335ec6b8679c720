package dev.lockstep.moe.synth;

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
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Writes a synthetic checkpoint (standard HF layout: sharded safetensors with an index, config.json, a tokenizer
 * copied from a real model) from a family's tensor declarations ({@link FamilySynth}), for benchmarks and load tests
 * at real layer shapes. Matrices are approximately N(0, 1/fan_in) (Irwin-Hall sum of four uniforms, scaled: bounded
 * at 3.46 standard deviations, far cheaper than Gaussian sampling), norms 1, biases 0, MXFP4 experts random codes
 * with a fitting scale. Each tensor has its own seed derived from {@code seed} and its name, so the bytes do not
 * depend on the order or the threads that generate them.
 */
public final class CheckpointSynthesizer {
    /** How a tensor is filled (and so its dtype). */
    public enum Fill {
        MATRIX(DType.BF16), ONES(DType.BF16), ZEROS(DType.BF16), MX_BLOCKS(DType.U8), MX_SCALES(DType.U8);

        private final DType dtype;

        Fill(DType dtype) {
            this.dtype = dtype;
        }

        public DType dtype() {
            return dtype;
        }
    }

    /** One tensor to write. */
    public record Tensor(String name, long[] shape, Fill fill) {
        public long bytes() {
            long n = fill.dtype().sizeBytes();
            for (long d : shape) {
                n *= d;
            }
            return n;
        }

        public long elements() {
            long n = 1;
            for (long d : shape) {
                n *= d;
            }
            return n;
        }
    }

    private static final long SHARD_BYTES = 2L << 30;

    private CheckpointSynthesizer() {
    }

    /**
     * Writes {@code tensors} (sharded, with an index) and {@code config} to the new directory {@code out}, with the
     * tokenizer files of {@code tokenizerFrom}; built in a temporary directory and renamed when complete.
     */
    public static void write(ObjectNode config, List<Tensor> tensors, long seed, Path tokenizerFrom, Path out, Progress progress) {
        if (Files.exists(out)) {
            throw new LockstepException(out + ": already exists; give a new directory");
        }
        Path tokenizer = tokenizerFrom.resolve("tokenizer.json");
        if (!Files.isRegularFile(tokenizer)) {
            throw new LockstepException(tokenizerFrom + ": no tokenizer.json to copy");
        }
        Path parent = out.toAbsolutePath().getParent();
        Path tmp = dev.lockstep.memory.PartialDirectory.temporaryFor(out);
        try {
            Files.createDirectories(tmp);
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
                            .map(t -> new SafetensorsWriter.Entry(t.name(), t.fill().dtype(), t.shape())).toList();
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
            Files.writeString(tmp.resolve("config.json"), config.toPrettyString());
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

    /**
     * The bytes of one tensor: norms 1.0, biases 0, matrices ~ N(0, 1/fan_in) (fan_in = the last dimension), MXFP4
     * blocks uniformly random codes with E8M0 scales that give those matrices about the same spread.
     */
    private static byte[] generate(Tensor t, long seed) {
        byte[] out = new byte[Math.toIntExact(t.bytes())];
        int n = out.length / 2;
        SplittableRandom r = new SplittableRandom(seed * 0x9E3779B97F4A7C15L ^ t.name().hashCode());
        switch (t.fill()) {
            case ZEROS -> {
                return out;
            }
            case MX_BLOCKS -> {
                r.nextBytes(out);
                return out;
            }
            case MX_SCALES -> {
                // a random E2M1 code has a standard deviation of about 3; the input width is 32 per scale of the last dimension
                double sd = 1 / Math.sqrt(32.0 * t.shape()[t.shape().length - 1]) / 3;
                int e = 127 + (int) Math.round(Math.log(sd) / Math.log(2));
                java.util.Arrays.fill(out, (byte) e);
                return out;
            }
            default -> {
            }
        }
        if (t.fill() == Fill.ONES) {
            for (int i = 0; i < n; i++) {
                out[2 * i] = (byte) 0x80;   // 1.0 = 0x3F80
                out[2 * i + 1] = (byte) 0x3f;
            }
            return out;
        }
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

}
