package dev.lockstep.verify;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.Checkpoint;
import dev.lockstep.memory.CheckpointException;
import dev.lockstep.memory.TensorInfo;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.kv.KvCache;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The same model in other on-disk shapes: one single-file checkpoint, float32 and float16 weights, the
 * older config key names, tied embeddings, dense (mlp_only) layers. Each must load; where the math is
 * unchanged the logits must be bit-identical to the bundled model's.
 */
class CheckpointVariantsTest {
    static WorkerPool pool;
    static float[] reference;
    static final int[] PROMPT = {1146, 259, 2084, 387, 3363};

    @TempDir
    Path tmp;

    @BeforeAll
    static void reference() {
        pool = new WorkerPool(2);
        reference = logits(Golden.bundledModel());
    }

    @AfterAll
    static void close() {
        pool.close();
    }

    static float[] logits(Path dir) {
        try (CausalLm model = ModelFamilies.load(dir, pool); KvCache cache = model.newKvCache(PROMPT.length)) {
            float[] out = new float[PROMPT.length * model.vocabSize()];
            model.forward(PROMPT, 0, PROMPT.length, cache, model.newState(PROMPT.length), out, LogitsMode.ALL, ForwardObserver.NONE);
            return out;
        }
    }

    /** All tensors of the bundled model in one writer, optionally converted. */
    static SafetensorsWriter merged() {
        SafetensorsWriter all = new SafetensorsWriter();
        try (Checkpoint c = Checkpoint.open(Golden.bundledModel())) {
            for (TensorInfo t : c.tensors()) {
                all.put(t.name(), t.dtype().safetensorsName(), t.shape(), c.tensor(t.name()).data().toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
            }
        }
        return all;
    }

    /** A model directory with config, tokenizer and a single model.safetensors written by {@code writer}. */
    Path singleFileModel(SafetensorsWriter writer, Consumer<ObjectNode> configEdit) throws IOException {
        Path dir = tmp.resolve("m" + System.nanoTime());
        Files.createDirectories(dir);
        ObjectMapper mapper = new ObjectMapper();
        ObjectNode config = (ObjectNode) mapper.readTree(Golden.bundledModel().resolve("config.json").toFile());
        configEdit.accept(config);
        mapper.writeValue(dir.resolve("config.json").toFile(), config);
        Files.copy(Golden.bundledModel().resolve("tokenizer.json"), dir.resolve("tokenizer.json"));
        writer.write(dir.resolve(Checkpoint.SINGLE_FILE));
        return dir;
    }

    static byte[] bf16ToF32(byte[] bf16) {
        ByteBuffer in = ByteBuffer.wrap(bf16).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer out = ByteBuffer.allocate(bf16.length * 2).order(ByteOrder.LITTLE_ENDIAN);
        while (in.hasRemaining()) {
            out.putFloat(Float.intBitsToFloat(in.getShort() << 16));
        }
        return out.array();
    }

    static byte[] bf16ToF16(byte[] bf16) {
        ByteBuffer in = ByteBuffer.wrap(bf16).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer out = ByteBuffer.allocate(bf16.length).order(ByteOrder.LITTLE_ENDIAN);
        while (in.hasRemaining()) {
            out.putShort(Float.floatToFloat16(Float.intBitsToFloat(in.getShort() << 16)));
        }
        return out.array();
    }

    static SafetensorsWriter converted(String dtype, java.util.function.UnaryOperator<byte[]> convert) {
        SafetensorsWriter w = merged();
        SafetensorsWriter out = new SafetensorsWriter();
        try (Checkpoint c = Checkpoint.open(Golden.bundledModel())) {
            for (TensorInfo t : c.tensors()) {
                out.put(t.name(), dtype, t.shape(), convert.apply(w.get(t.name()).data()));
            }
        }
        return out;
    }

    @Test
    void singleFileCheckpointGivesIdenticalLogits() throws IOException {
        assertArrayEquals(reference, logits(singleFileModel(merged(), c -> { })));
    }

    @Test
    void float32WeightsGiveIdenticalLogits() throws IOException {
        // bf16 -> f32 is exact and matmul is a fixed fma chain, so the bits cannot change.
        assertArrayEquals(reference, logits(singleFileModel(converted("F32", CheckpointVariantsTest::bf16ToF32), c -> { })));
    }

    @Test
    void float16WeightsRunAndStayClose() throws IOException {
        // bf16 -> f16 rounds values below f16's normal range, so only closeness is expected.
        float[] f16 = logits(singleFileModel(converted("F16", CheckpointVariantsTest::bf16ToF16), c -> { }));
        int vocab = 4096;
        for (int t = 0; t < PROMPT.length; t++) {
            double err = Golden.relL2(f16, t * vocab, reference, t * vocab, vocab);
            assertTrue(err < 1e-2, "position " + t + ": relative L2 " + err);
        }
    }

    @Test
    void olderConfigKeyNamesAreAccepted() throws IOException {
        Path dir = singleFileModel(merged(), c -> {
            c.set("num_experts", c.remove("num_local_experts"));
            c.put("rope_theta", c.remove("rope_parameters").get("rope_theta").asDouble());
        });
        assertArrayEquals(reference, logits(dir));
    }

    @Test
    void tiedEmbeddingsUseTheEmbeddingAsLmHead() throws IOException {
        SafetensorsWriter w = merged().remove("lm_head.weight");
        Path dir = singleFileModel(w, c -> c.put("tie_word_embeddings", true));
        float[] tied = logits(dir);
        assertFalse(Arrays.equals(reference, tied), "a different lm_head must change the logits");
        try (CausalLm model = ModelFamilies.load(dir, pool)) {
            assertTrue(model.summary().tensors().stream().noneMatch(t -> t.name().equals("lm_head.weight")));
            assertEquals(12_742_656L - 4096L * 256, model.summary().totalParameters());
        }
        // Untied config without lm_head is an error, not a silent tie.
        CheckpointException e = assertThrows(CheckpointException.class, () -> logits(singleFileModel(w, c -> { })));
        assertTrue(e.getMessage().contains("lm_head.weight"), e.getMessage());
    }

    @Test
    void mlpOnlyLayersUseADenseMlp() throws IOException {
        SafetensorsWriter w = merged();
        int inter = 512, hidden = 256;
        SplittableRandom r = new SplittableRandom(3);
        for (String name : new String[]{"gate_proj", "up_proj", "down_proj"}) {
            long[] shape = name.equals("down_proj") ? new long[]{hidden, inter} : new long[]{inter, hidden};
            ByteBuffer b = ByteBuffer.allocate(inter * hidden * 2).order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < inter * hidden; i++) {
                b.putShort((short) (Float.floatToIntBits((float) (r.nextGaussian() * 0.02)) >>> 16));
            }
            w.put("model.layers.2.mlp." + name + ".weight", "BF16", shape, b.array());
        }
        Path dir = singleFileModel(w, c -> c.putArray("mlp_only_layers").add(2));
        float[] dense = logits(dir);
        assertEquals(reference.length, dense.length);
        assertFalse(Arrays.equals(reference, dense), "layer 2 now runs a different MLP");
        for (float v : dense) {
            assertTrue(Float.isFinite(v));
        }
        try (CausalLm model = ModelFamilies.load(dir, pool)) {
            // layer 2's 16 experts and router are no longer used
            assertTrue(model.summary().tensors().stream().noneMatch(t -> t.name().startsWith("model.layers.2.mlp.experts.")));
            // 16 experts x 3 matrices + the router of layer 2 are in the file but unused
            assertEquals(49, model.summary().unusedTensors().size());
            assertTrue(model.summary().unusedTensors().stream().allMatch(t -> t.name().startsWith("model.layers.2.mlp.")));
        }
    }
}
