package dev.lockstep.verify;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.PanamaKernels;
import dev.lockstep.kernels.ScalarKernels;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.Checkpoint;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.memory.Progress;
import dev.lockstep.memory.SafetensorsFile;
import dev.lockstep.memory.TensorInfo;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.CheckpointQuantizer;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.LoadOptions;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.Nvfp4Recipe;
import dev.lockstep.moe.kv.KvCache;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * NVFP4 end to end on the bundled model. {@code lockstep quantize} must reproduce ModelOpt's reference
 * checkpoint ({@code reference/nvfp4/kjv-qwen3moe-nvfp4}; its tensors' SHA-256 digests are the test resource) byte
 * for byte; loading it must reproduce HF's goldens of the dequantized model (logits within relative L2 1e-4 at
 * every position, 48 greedy tokens); quantizing at load must give bit-identical logits to loading the file.
 */
class Nvfp4ModelTest {
    static final double TOLERANCE = 1e-4;
    static Path dir;
    static Path quantized;
    static WorkerPool pool;
    static SafetensorsFile golden;
    static JsonNode goldenJson;

    @BeforeAll
    static void quantize() throws IOException {
        dir = Files.createTempDirectory("lockstep-nvfp4");
        quantized = dir.resolve("kjv-nvfp4");
        CheckpointQuantizer.quantize(Golden.bundledModel(), quantized, new Nvfp4Recipe(false, List.of()), "test", Progress.NONE);
        pool = new WorkerPool(2);
        golden = SafetensorsFile.open(Nvfp4FormatsTest.resource("kjv-qwen3moe-nvfp4/golden.safetensors"));
        goldenJson = new ObjectMapper().readTree(Files.readString(Nvfp4FormatsTest.resource("kjv-qwen3moe-nvfp4/golden.json")));
    }

    @AfterAll
    static void close() throws IOException {
        golden.close();
        pool.close();
        try (var walk = Files.walk(dir)) {
            walk.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    static String sha256(java.lang.foreign.MemorySegment data) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data.toArray(ValueLayout.JAVA_BYTE)));
    }

    @Test
    void quantizeReproducesTheModelOptReferenceByteForByte() throws Exception {
        JsonNode digests = new ObjectMapper().readTree(Files.readString(Nvfp4FormatsTest.resource("kjv-qwen3moe-nvfp4/reference-digests.json")));
        assertEquals(936, digests.size(), "weight, weight_scale, weight_scale_2 of 312 modules");
        int checked = 0;
        try (Checkpoint c = Checkpoint.open(quantized)) {
            for (Map.Entry<String, JsonNode> e : digests.properties()) {
                assertTrue(c.contains(e.getKey()), "missing " + e.getKey());
                TensorInfo t = c.tensor(e.getKey()).info();
                assertEquals(e.getValue().get("dtype").asText(), t.dtype().safetensorsName(), e.getKey());
                assertEquals(e.getValue().get("shape").toString(), new ObjectMapper().valueToTree(t.shape()).toString(), e.getKey());
                assertEquals(e.getValue().get("sha256").asText(), sha256(c.tensor(e.getKey()).data()), e.getKey() + " bytes");
                checked++;
            }
        }
        assertEquals(936, checked);
        JsonNode hfq = new ObjectMapper().readTree(Files.readString(quantized.resolve("hf_quant_config.json")));
        assertEquals("NVFP4", hfq.get("quantization").get("quant_algo").asText());
        assertEquals("[\"lm_head\",\"model.embed_tokens\",\"model.layers.0.mlp.gate\",\"model.layers.1.mlp.gate\",\"model.layers.2.mlp.gate\","
                + "\"model.layers.3.mlp.gate\",\"model.layers.4.mlp.gate\",\"model.layers.5.mlp.gate\"]", hfq.get("quantization").get("exclude_modules").toString());
        JsonNode config = new ObjectMapper().readTree(Files.readString(quantized.resolve("config.json")));
        assertEquals("modelopt", config.get("quantization_config").get("quant_method").asText());
        assertTrue(Files.exists(quantized.resolve("tokenizer.json")));
    }

    static float[] logits(CausalLm model, int[] tokens) {
        int vocab = model.vocabSize();
        float[] logits = new float[tokens.length * vocab];
        try (KvCache cache = model.newKvCache(tokens.length)) {
            model.forward(tokens, 0, tokens.length, cache, model.newState(tokens.length), logits, LogitsMode.ALL, ForwardObserver.NONE);
        }
        return logits;
    }

    static int[] prompt(String p) {
        return Golden.intArray(goldenJson.get("prompts").get(p));
    }

    static CausalLm load(Path model, Kernels kernels, LoadOptions options) {
        return ModelFamilies.load(ModelFamilies.readConfig(model), kernels, pool, options);
    }

    @ParameterizedTest
    @ValueSource(strings = {"p0", "p1"})
    void theQuantizedCheckpointMatchesHfGoldensAndQuantizingAtLoadGivesTheSameBits(String p) {
        int[] tokens = prompt(p);
        float[] theirs = Golden.floats(golden, "logits." + p);
        try (CausalLm file = load(quantized, dev.lockstep.kernels.KernelProvider.get(), LoadOptions.DEFAULT);
             CausalLm atLoad = load(Golden.bundledModel(), dev.lockstep.kernels.KernelProvider.get(), new LoadOptions(true, false, List.of()))) {
            float[] ours = logits(file, tokens);
            int vocab = file.vocabSize();
            for (int t = 0; t < tokens.length; t++) {
                double err = Golden.relL2(ours, t * vocab, theirs, t * vocab, vocab);
                assertTrue(err <= TOLERANCE, p + " position " + t + ": relative L2 " + err + " > " + TOLERANCE);
                assertEquals(Golden.argmax(theirs, t * vocab, vocab), Golden.argmax(ours, t * vocab, vocab), p + " argmax at " + t);
            }
            assertArrayEquals(ours, logits(atLoad, tokens), "--quant nvfp4 == quantize then load");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"p0", "p1"})
    void greedyTokensMatchHf(String p) {
        int[] tokens = prompt(p);
        int[] expected = Golden.intArray(goldenJson.get("greedy").get(p));
        try (CausalLm model = load(quantized, dev.lockstep.kernels.KernelProvider.get(), LoadOptions.DEFAULT)) {
            assertArrayEquals(expected, Golden.greedy(model, tokens, expected.length));
        }
    }

    /** Runs at 128, 256 and 512 bits too (verify/pom.xml): the whole NVFP4 forward, vector against scalar. */
    @Test
    void vectorAndScalarKernelsGiveTheSameLogits() {
        KernelMatrixTest.assumeWidthSupported();
        int[] tokens = prompt("p1");
        try (CausalLm vector = load(quantized, new PanamaKernels(), LoadOptions.DEFAULT);
             CausalLm scalar = load(quantized, new ScalarKernels(), LoadOptions.DEFAULT)) {
            assertArrayEquals(logits(scalar, tokens), logits(vector, tokens));
        }
    }

    @Test
    void quantizingAQuantizedModelOrIntoAnExistingDirectoryIsRefused() {
        LockstepException twice = assertThrows(LockstepException.class, () -> CheckpointQuantizer.quantize(quantized, dir.resolve("again"),
                new Nvfp4Recipe(false, List.of()), "test", Progress.NONE));
        assertTrue(twice.getMessage().contains("already quantized"), twice.getMessage());
        LockstepException exists = assertThrows(LockstepException.class, () -> CheckpointQuantizer.quantize(Golden.bundledModel(), quantized,
                new Nvfp4Recipe(false, List.of()), "test", Progress.NONE));
        assertTrue(exists.getMessage().contains("already exists"), exists.getMessage());
    }

    @Test
    void aFailedQuantizeLeavesNoDirectoryBehind() throws IOException {
        Path broken = dir.resolve("broken");
        Files.createDirectories(broken);
        for (Path f : Files.list(Golden.bundledModel()).toList()) {
            Files.copy(f, broken.resolve(f.getFileName()));
        }
        // the last shard cut short: the failure comes after earlier shards were written
        Path last = broken.resolve("model-00004-of-00004.safetensors");
        byte[] bytes = Files.readAllBytes(last);
        Files.write(last, java.util.Arrays.copyOf(bytes, bytes.length - 100));
        Path out = dir.resolve("broken-nvfp4");
        assertThrows(RuntimeException.class, () -> CheckpointQuantizer.quantize(broken, out, new Nvfp4Recipe(false, List.of()), "test", Progress.NONE));
        assertFalse(Files.exists(out));
        try (var list = Files.list(dir)) {
            assertEquals(List.of(), list.filter(f -> f.getFileName().toString().contains("partial")).toList(), "no temporary directory left");
        }
    }

    @Test
    void excludeAndLmHeadOptionsChangeWhatIsQuantized() throws IOException {
        Path out = dir.resolve("partial-exclude");
        CheckpointQuantizer.quantize(Golden.bundledModel(), out, new Nvfp4Recipe(true, List.of("model.layers.0.mlp*", "model.layers.1.self_attn.q_proj")),
                "test", Progress.NONE);
        Map<String, String> dtypes = new TreeMap<>();
        try (Checkpoint c = Checkpoint.open(out)) {
            c.tensors().forEach(t -> dtypes.put(t.name(), t.dtype().safetensorsName()));
        }
        assertEquals("U8", dtypes.get("lm_head.weight"));
        assertEquals("BF16", dtypes.get("model.layers.0.mlp.experts.3.up_proj.weight"));
        assertEquals("BF16", dtypes.get("model.layers.1.self_attn.q_proj.weight"));
        assertEquals("U8", dtypes.get("model.layers.1.self_attn.k_proj.weight"));
        assertEquals("BF16", dtypes.get("model.embed_tokens.weight"));
        try (CausalLm m = load(out, dev.lockstep.kernels.KernelProvider.get(), LoadOptions.DEFAULT)) {
            assertEquals(4096, m.vocabSize()); // a mixed checkpoint loads
        }
    }

    /**
     * The same weights in compressed-tensors' {@code nvfp4-pack-quantized} layout ({@code weight_packed},
     * {@code weight_global_scale} = 1 / weight_scale_2, a divisor, shape [1]) load and match the goldens too.
     */
    @Test
    void compressedTensorsLayoutLoadsAndMatchesTheGoldens() throws IOException {
        Path ct = dir.resolve("kjv-ct");
        Files.createDirectories(ct);
        for (Path f : Files.list(quantized).toList()) {
            String name = f.getFileName().toString();
            if (name.endsWith(".safetensors")) {
                SafetensorsWriter w = SafetensorsWriter.copyOf(f);
                for (String t : List.copyOf(w.names())) {
                    if (t.endsWith(".weight_scale_2")) {
                        String m = t.substring(0, t.length() - ".weight_scale_2".length());
                        float scale2 = java.nio.ByteBuffer.wrap(w.get(t).data()).order(java.nio.ByteOrder.LITTLE_ENDIAN).getFloat();
                        byte[] divisor = java.nio.ByteBuffer.allocate(4).order(java.nio.ByteOrder.LITTLE_ENDIAN).putFloat(1f / scale2).array();
                        SafetensorsWriter.Entry codes = w.get(m + ".weight");
                        w.remove(t).remove(m + ".weight")
                                .put(m + ".weight_packed", codes.dtype(), codes.shape(), codes.data())
                                .put(m + ".weight_global_scale", "F32", new long[]{1}, divisor);
                    }
                }
                w.write(ct.resolve(name));
            } else if (name.equals("config.json")) {
                var config = (com.fasterxml.jackson.databind.node.ObjectNode) new ObjectMapper().readTree(Files.readString(f));
                var q = config.putObject("quantization_config");
                q.put("quant_method", "compressed-tensors").put("format", "nvfp4-pack-quantized").put("quantization_status", "compressed");
                Files.writeString(ct.resolve(name), config.toPrettyString());
            } else if (!name.equals("hf_quant_config.json") && !name.equals("model.safetensors.index.json")) {
                Files.copy(f, ct.resolve(name));
            }
        }
        // the index names the renamed tensors
        var index = (com.fasterxml.jackson.databind.node.ObjectNode) new ObjectMapper().readTree(Files.readString(quantized.resolve("model.safetensors.index.json")));
        var map = (com.fasterxml.jackson.databind.node.ObjectNode) index.get("weight_map");
        for (String t : List.copyOf(iterable(map.fieldNames()))) {
            if (t.endsWith(".weight_scale_2")) {
                String m = t.substring(0, t.length() - ".weight_scale_2".length());
                String file = map.remove(t).asText();
                map.remove(m + ".weight");
                map.put(m + ".weight_packed", file).put(m + ".weight_global_scale", file);
            }
        }
        Files.writeString(ct.resolve("model.safetensors.index.json"), index.toPrettyString());
        int[] tokens = prompt("p1");
        float[] theirs = Golden.floats(golden, "logits.p1");
        try (CausalLm model = load(ct, dev.lockstep.kernels.KernelProvider.get(), LoadOptions.DEFAULT)) {
            float[] ours = logits(model, tokens);
            int vocab = model.vocabSize();
            for (int t = 0; t < tokens.length; t++) {
                double err = Golden.relL2(ours, t * vocab, theirs, t * vocab, vocab);
                assertTrue(err <= TOLERANCE, "compressed-tensors p1 position " + t + ": relative L2 " + err);
            }
        }
    }

    private static <T> List<T> iterable(java.util.Iterator<T> it) {
        List<T> out = new java.util.ArrayList<>();
        it.forEachRemaining(out::add);
        return out;
    }
}
