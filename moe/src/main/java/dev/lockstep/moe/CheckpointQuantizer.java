package dev.lockstep.moe;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lockstep.kernels.DenseFormat;
import dev.lockstep.kernels.Nvfp4Format;
import dev.lockstep.kernels.Nvfp4Quantizer;
import dev.lockstep.kernels.WeightFormat;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.memory.Checkpoint;
import dev.lockstep.memory.DType;
import dev.lockstep.memory.Json;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.memory.Progress;
import dev.lockstep.memory.SafetensorsWriter;
import dev.lockstep.memory.TensorInfo;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.stream.Stream;

/**
 * Writes an NVFP4 copy of an unquantized HF checkpoint in NVIDIA ModelOpt's export layout: each quantized
 * Linear ({@link Nvfp4Recipe}) becomes {@code weight} U8 {@code [out, in/2]}, {@code weight_scale} F8_E4M3
 * {@code [out, in/16]} and {@code weight_scale_2} F32 {@code []}; every other tensor is copied as it is, in the
 * same shard; config.json gains ModelOpt's {@code quantization_config}, {@code hf_quant_config.json} is written,
 * other files (tokenizer, generation config) are copied. The output is built in a hidden temporary directory
 * beside {@code out} and renamed into place only when complete, so an interrupted run never leaves a directory
 * that looks like a model.
 *
 * <p>No {@code input_scale} is written: it needs a calibration pass over activation statistics, and the
 * weight-only (W4A16) kernels here do not use it. Loaders that run W4A4 kernels need it.
 */
public final class CheckpointQuantizer {
    private CheckpointQuantizer() {
    }

    /** What was written. */
    public record Result(int quantizedModules, long inputBytes, long outputBytes) {
    }

    public static Result quantize(Path in, Path out, Nvfp4Recipe recipe, String producerVersion, Progress progress) {
        ModelConfigJson config = ModelFamilies.readConfig(in);
        if (!CheckpointQuantization.check(config).equals("none")) {
            throw new LockstepException(config.file() + ": the checkpoint is already quantized (" + CheckpointQuantization.check(config)
                    + "); quantize an unquantized (bf16/f16/f32) checkpoint");
        }
        if (Files.exists(out)) {
            throw new LockstepException(out + ": already exists; give a new directory for the quantized model");
        }
        Path parent = out.toAbsolutePath().getParent();
        if (parent == null || !Files.isDirectory(parent)) {
            throw new LockstepException(out + ": its parent directory does not exist");
        }
        Path tmp = dev.lockstep.memory.PartialDirectory.temporaryFor(out);
        try (Checkpoint checkpoint = Checkpoint.open(in)) {
            Files.createDirectory(tmp);
            Result r = write(in, checkpoint, config, tmp, recipe, producerVersion, progress);
            Files.move(tmp, out, StandardCopyOption.ATOMIC_MOVE);
            return r;
        } catch (IOException e) {
            dev.lockstep.memory.PartialDirectory.deleteQuietly(tmp);
            throw new UncheckedIOException(out + ": " + e.getMessage(), e);
        } catch (RuntimeException | Error e) {
            dev.lockstep.memory.PartialDirectory.deleteQuietly(tmp);
            throw e;
        }
    }

    /** The quantizing threads: one per core. */
    private record Pool(java.util.concurrent.ExecutorService executor, int threads) implements AutoCloseable {
        static Pool create() {
            int n = Math.max(1, Runtime.getRuntime().availableProcessors());
            return new Pool(java.util.concurrent.Executors.newFixedThreadPool(n, r -> Thread.ofPlatform().daemon().name("lockstep-quantize").unstarted(r)), n);
        }

        <T> T await(java.util.concurrent.Future<T> f) {
            try {
                return f.get();
            } catch (java.util.concurrent.ExecutionException e) {
                if (e.getCause() instanceof RuntimeException re) {
                    throw re;
                }
                if (e.getCause() instanceof Error err) {
                    throw err;
                }
                throw new IllegalStateException(e.getCause());
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new LockstepException("interrupted while quantizing");
            }
        }

        @Override
        public void close() {
            executor.shutdownNow();
        }
    }

    private static Result write(Path in, Checkpoint checkpoint, ModelConfigJson config, Path tmp, Nvfp4Recipe recipe,
                                String producerVersion, Progress progress) throws IOException {
        try (Pool pool = Pool.create()) {
            return write(in, checkpoint, config, tmp, recipe, producerVersion, progress, pool);
        }
    }

    private static Result write(Path in, Checkpoint checkpoint, ModelConfigJson config, Path tmp, Nvfp4Recipe recipe,
                                String producerVersion, Progress progress, Pool pool) throws IOException {
        // Which tensors are quantized, and each one's weight_scale_2 (amax over its shared-input group).
        Map<String, TensorInfo> byName = new HashMap<>();
        checkpoint.tensors().forEach(t -> byName.put(t.name(), t));
        Map<String, Float> scale2 = new HashMap<>();
        TreeSet<String> kept = new TreeSet<>();
        for (TensorInfo t : checkpoint.tensors()) {
            if (t.shape().length == 3 && WeightFormat.of(t.dtype()) != null && recipe.quantizesExpert(t.name())) {
                // Granite's input_linear, gpt-oss's gate_up_proj: ModelOpt has no NVFP4 export layout for fused 3-D expert
                // tensors that we could verify, and leaving them dense in an "NVFP4" checkpoint would be a silent lie
                throw new LockstepException(t.file() + ": tensor '" + t.name() + "' " + t.shapeString() + " holds fused experts; "
                        + "lockstep quantize writes 2-D Linear weights only. Load this model with --quant nvfp4 instead (its experts are "
                        + "quantized at load, the packed cache keeps them), or exclude the module with --exclude");
            }
            String module = Nvfp4Recipe.module(t.name());
            boolean matrix = t.shape().length == 2 && WeightFormat.of(t.dtype()) != null;
            if (module == null || !matrix) {
                continue;
            }
            if (!recipe.quantizes(t.name()) || t.shape()[1] % Nvfp4Format.BLOCK != 0) {
                kept.add(module);
                continue;
            }
            if (!scale2.containsKey(t.name())) {
                List<String> group = Nvfp4Recipe.sharedInputGroup(t.name(), n -> byName.containsKey(n) && recipe.quantizes(n));
                List<java.util.concurrent.Future<Float>> parts = new ArrayList<>();
                for (String member : group) {
                    parts.add(pool.executor().submit(() -> Nvfp4Quantizer.amax(dense(checkpoint, byName.get(member)))));
                }
                float amax = 0f;
                for (var part : parts) {
                    amax = Math.max(amax, pool.await(part));
                }
                float s = Nvfp4Quantizer.weightScale2(amax);
                if (!(s > 0f) || !Float.isFinite(s)) {
                    throw new LockstepException(t.file() + ": tensor '" + t.name() + "' (with " + group + ") has amax " + amax
                            + "; NVFP4 needs a finite, non-zero tensor");
                }
                group.forEach(member -> scale2.put(member, s));
            }
        }
        // One output shard per input shard, same file names, tensors sorted by name.
        Map<Path, List<TensorInfo>> shards = new TreeMap<>();
        for (TensorInfo t : checkpoint.tensors()) {
            shards.computeIfAbsent(t.file().getFileName(), f -> new ArrayList<>()).add(t);
        }
        long total = checkpoint.totalBytes(), done = 0, outputBytes = 0;
        Map<String, String> weightMap = new TreeMap<>();
        for (Map.Entry<Path, List<TensorInfo>> shard : shards.entrySet()) {
            List<TensorInfo> tensors = new ArrayList<>(shard.getValue());
            tensors.sort(Comparator.comparing(TensorInfo::name));
            List<SafetensorsWriter.Entry> entries = new ArrayList<>();
            for (TensorInfo t : tensors) {
                if (scale2.containsKey(t.name())) {
                    long rows = t.shape()[0], cols = t.shape()[1];
                    String m = Nvfp4Recipe.module(t.name());
                    entries.add(new SafetensorsWriter.Entry(t.name(), DType.U8, new long[]{rows, cols / 2}));
                    entries.add(new SafetensorsWriter.Entry(m + ".weight_scale", DType.F8_E4M3, new long[]{rows, cols / Nvfp4Format.BLOCK}));
                    entries.add(new SafetensorsWriter.Entry(m + ".weight_scale_2", DType.F32, new long[]{}));
                } else {
                    entries.add(new SafetensorsWriter.Entry(t.name(), t.dtype(), t.shape()));
                }
            }
            entries.sort(Comparator.comparing(SafetensorsWriter.Entry::name));
            Map<String, TensorInfo> sources = new HashMap<>();
            tensors.forEach(t -> sources.put(t.name(), t));
            Path file = tmp.resolve(shard.getKey());
            // quantized tensors in the order they are written, quantized ahead on every core (a bounded window)
            List<TensorInfo> toQuantize = new ArrayList<>();
            for (SafetensorsWriter.Entry e : entries) {
                TensorInfo src = sources.get(e.name());
                if (src != null && scale2.containsKey(src.name())) {
                    toQuantize.add(src);
                }
            }
            Map<String, java.util.concurrent.Future<byte[][]>> inFlight = new HashMap<>();
            int[] nextToSubmit = {0};
            Runnable topUp = () -> {
                while (nextToSubmit[0] < toQuantize.size() && inFlight.size() < 2 * pool.threads()) {
                    TensorInfo t = toQuantize.get(nextToSubmit[0]++);
                    inFlight.put(t.name(), pool.executor().submit(() -> quantize(dense(checkpoint, t), scale2.get(t.name()))));
                }
            };
            try (SafetensorsWriter w = SafetensorsWriter.create(file, entries, Map.of("format", "pt"))) {
                Map<String, byte[]> pending = new HashMap<>();
                for (SafetensorsWriter.Entry e : entries) {
                    weightMap.put(e.name(), shard.getKey().toString());
                    byte[] ready = pending.remove(e.name());
                    if (ready != null) {
                        w.write(e.name(), ready);
                        continue;
                    }
                    TensorInfo src = sources.get(e.name());
                    if (src != null && scale2.containsKey(src.name())) {
                        topUp.run();
                        byte[][] q = pool.await(inFlight.remove(src.name()));
                        topUp.run();
                        String m = Nvfp4Recipe.module(src.name());
                        pending.put(m + ".weight_scale", q[1]);
                        pending.put(m + ".weight_scale_2", ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putFloat(scale2.get(src.name())).array());
                        w.write(e.name(), q[0]);
                    } else {
                        w.write(e.name(), checkpoint.tensor(e.name()).data());
                    }
                    if (src != null) {
                        done += src.lengthBytes();
                        progress.update(done, total);
                    }
                }
                if (!pending.isEmpty()) {
                    throw new IllegalStateException("unwritten NVFP4 parts " + pending.keySet());
                }
            }
            outputBytes += Files.size(file);
        }
        if (Files.exists(in.resolve(Checkpoint.INDEX_FILE)) || shards.size() > 1) {
            ObjectNode index = Json.MAPPER.createObjectNode();
            index.putObject("metadata").put("total_size", outputBytes);
            ObjectNode map = index.putObject("weight_map");
            weightMap.forEach(map::put);
            Files.writeString(tmp.resolve(Checkpoint.INDEX_FILE), index.toPrettyString());
        }
        List<String> ignore = new ArrayList<>(kept);
        writeConfig(config, tmp.resolve("config.json"), ignore);
        writeHfQuantConfig(tmp.resolve("hf_quant_config.json"), ignore, producerVersion);
        try (Stream<Path> files = Files.list(in)) {
            for (Path f : files.toList()) {
                String name = f.getFileName().toString();
                if (Files.isRegularFile(f) && !name.endsWith(".safetensors") && !name.equals(Checkpoint.INDEX_FILE)
                        && !name.equals("config.json") && !name.equals("hf_quant_config.json")) {
                    Files.copy(f, tmp.resolve(name));
                }
            }
        }
        return new Result(scale2.size(), total, outputBytes);
    }

    private static WeightMatrix dense(Checkpoint checkpoint, TensorInfo t) {
        DenseFormat format = WeightFormat.of(t.dtype());
        return new WeightMatrix(t.name(), format, Math.toIntExact(t.shape()[0]), Math.toIntExact(t.shape()[1]), checkpoint.tensor(t.name()).data());
    }

    /** {codes, scales} of a dense matrix, row-major as the checkpoint stores them. */
    private static byte[][] quantize(WeightMatrix m, float scale2) {
        int rows = m.rows(), cols = m.cols();
        byte[] codes = new byte[Math.toIntExact((long) rows * cols / 2)];
        byte[] scales = new byte[Math.toIntExact((long) rows * cols / Nvfp4Format.BLOCK)];
        float[] row = new float[cols];
        for (int r = 0; r < rows; r++) {
            m.rowToFloat(r, row, 0);
            for (float v : row) {
                if (!Float.isFinite(v)) {
                    throw new LockstepException(m.name() + ": row " + r + " holds a non-finite value; cannot quantize");
                }
            }
            Nvfp4Quantizer.quantizeRow(row, 0, cols, scale2, codes, r * (cols / 2), scales, r * (cols / Nvfp4Format.BLOCK));
        }
        return new byte[][]{codes, scales};
    }

    private static ObjectNode quantizationGroup() {
        ObjectNode g = Json.MAPPER.createObjectNode();
        g.put("dynamic", false).put("num_bits", 4).put("type", "float").put("group_size", Nvfp4Format.BLOCK);
        return g;
    }

    private static void writeConfig(ModelConfigJson config, Path target, List<String> ignore) throws IOException {
        ObjectNode root = (ObjectNode) Json.MAPPER.readTree(Files.readString(config.file()));
        ObjectNode q = root.putObject("quantization_config");
        q.put("quant_method", "modelopt").put("quant_algo", "NVFP4");
        ObjectNode group = q.putObject("config_groups").putObject("group_0");
        group.set("weights", quantizationGroup());
        group.putArray("targets").add("Linear");
        ArrayNode ig = q.putArray("ignore");
        ignore.forEach(ig::add);
        Files.writeString(target, root.toPrettyString());
    }

    private static void writeHfQuantConfig(Path target, List<String> ignore, String producerVersion) throws IOException {
        ObjectNode root = Json.MAPPER.createObjectNode();
        root.putObject("producer").put("name", "lockstep").put("version", producerVersion);
        ObjectNode q = root.putObject("quantization");
        q.put("quant_algo", "NVFP4").put("group_size", Nvfp4Format.BLOCK).putNull("kv_cache_quant_algo");
        ArrayNode ex = q.putArray("exclude_modules");
        ignore.forEach(ex::add);
        Files.writeString(target, root.toPrettyString());
    }


}
