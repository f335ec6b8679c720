package dev.lockstep.verify;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.Checkpoint;
import dev.lockstep.memory.CheckpointException;
import dev.lockstep.memory.CheckpointException.Problem;
import dev.lockstep.memory.SafetensorsFile;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ConfigException;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelConfigJson;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.NonFiniteException;
import dev.lockstep.moe.kv.KvCache;
import dev.lockstep.moe.qwen3.Qwen3MoeFamily;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Inputs that used to pass silently or kill the process: each now fails with one documented error that says
 * what is wrong and where.
 */
class HardeningTest {
    static WorkerPool pool;
    static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    @BeforeAll
    static void pool() {
        pool = new WorkerPool(2);
    }

    @AfterAll
    static void closePool() {
        pool.close();
    }

    Path tiny() {
        return TinyModel.write(tmp.resolve("tiny"), 3);
    }

    // ---- safetensors: the tensors tile the data section, spaces only after the JSON ----

    static byte[] withHeaderLengthDelta(byte[] file, long delta) {
        ByteBuffer b = ByteBuffer.wrap(file.clone()).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(0, b.getLong(0) + delta);
        return b.array();
    }

    @Test
    void headerLengthLoweredIntoThePaddingIsRefused() throws IOException {
        // The case: a header padded with spaces, its length lowered by a few bytes: the JSON still parses,
        // but every tensor would be read a few bytes early. The data section no longer ends where the tensors do.
        String header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}        ";
        Path f = tmp.resolve("shifted.safetensors");
        Files.write(f, withHeaderLengthDelta(SafetensorsWriter.frame(header.getBytes(StandardCharsets.UTF_8), new byte[8]), -4));
        CheckpointException e = assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f));
        assertEquals(Problem.NOT_TILED, e.problem(), e.getMessage());
        assertTrue(e.getMessage().contains("shifted.safetensors") && e.getMessage().contains("tile"), e.getMessage());
    }

    @Test
    void gapsAndTrailingBytesInTheDataSectionAreRefused() throws IOException {
        Path f = tmp.resolve("gap.safetensors");
        String gap = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
        Files.write(f, SafetensorsWriter.frame(gap.getBytes(StandardCharsets.UTF_8), new byte[12]));
        CheckpointException e = assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f));
        assertEquals(Problem.NOT_TILED, e.problem());
        assertTrue(e.getMessage().contains("'b'") && e.getMessage().contains("4 unaccounted bytes"), e.getMessage());

        String trailing = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
        Files.write(f, SafetensorsWriter.frame(trailing.getBytes(StandardCharsets.UTF_8), new byte[6]));
        assertEquals(Problem.NOT_TILED, assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f)).problem());
    }

    @Test
    void onlySpacesMayPadTheHeader() throws IOException {
        String json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
        Path f = tmp.resolve("pad.safetensors");
        Files.write(f, SafetensorsWriter.frame((json + "   ").getBytes(StandardCharsets.UTF_8), new byte[4]));
        SafetensorsFile.open(f).close();
        for (String pad : new String[]{"\n", "\t", "\u0000", " x", "}"}) {
            Files.write(f, SafetensorsWriter.frame((json + pad).getBytes(StandardCharsets.UTF_8), new byte[4]));
            CheckpointException e = assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f), "pad " + pad.codePointAt(0));
            assertEquals(Problem.HEADER_JSON, e.problem(), e.getMessage());
        }
        Files.write(f, SafetensorsWriter.frame((" " + json).getBytes(StandardCharsets.UTF_8), new byte[4]));
        assertEquals(Problem.HEADER_JSON, assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f)).problem());
    }

    // ---- config.json: every value range-checked before anything is sized by it ----

    ConfigException configFails(String key, Object value, String... fragments) throws IOException {
        Path dir = tiny();
        ObjectNode c = (ObjectNode) JSON.readTree(dir.resolve("config.json").toFile());
        c.set(key, JSON.valueToTree(value));
        Files.writeString(dir.resolve("config.json"), c.toString());
        ConfigException e = assertThrows(ConfigException.class, () -> ModelFamilies.load(dir, pool).close(), key + "=" + value);
        assertTrue(e.getMessage().contains("config.json") && e.getMessage().contains(key), e.getMessage());
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "expected '" + f + "' in " + e.getMessage());
        }
        return e;
    }

    @Test
    void configValuesOutOfRangeAreRefusedBeforeAllocation() throws IOException {
        configFails("rope_theta", -1.0);
        configFails("rope_theta", 0.0);
        configFails("rope_theta", 1e300, "outside the supported range");
        configFails("rms_norm_eps", 0.0);
        configFails("rms_norm_eps", 5.0, "outside the supported range");
        configFails("rms_norm_eps", 1e-30, "outside the supported range");
        configFails("head_dim", 1 << 20, "outside the supported range");
        configFails("num_attention_heads", 1 << 20, "outside the supported range");
        configFails("num_hidden_layers", 100_000, "outside the supported range");
        configFails("num_experts", 1 << 30, "outside the supported range");
        configFails("vocab_size", Integer.MAX_VALUE, "outside the supported range");
        configFails("hidden_size", 3_000_000_000L, "positive integer");
        configFails("max_position_embeddings", -5, "positive integer");
    }

    @Test
    void productsThatWouldOverflowAreRefused() throws IOException {
        // 65,536 heads x 1,024 head dim x 65,536 hidden overflows int twice: it must not wrap back to a
        // plausible size. Each factor is in range; the product is not.
        Path dir = tiny();
        ObjectNode c = (ObjectNode) JSON.readTree(dir.resolve("config.json").toFile());
        c.put("hidden_size", 65536);
        c.put("vocab_size", 65536);
        Files.writeString(dir.resolve("config.json"), c.toString());
        ConfigException e = assertThrows(ConfigException.class, () -> ModelFamilies.load(dir, pool).close());
        assertTrue(e.getMessage().contains("vocab_size x hidden_size") && e.getMessage().contains("2^31"), e.getMessage());
    }

    static void fill(SafetensorsWriter w, String tensor, float value) {
        byte[] data = w.get(tensor).data();
        short bits = (short) (Float.floatToRawIntBits(value) >>> 16);
        for (int i = 0; i < data.length; i += 2) {
            data[i] = (byte) bits;
            data[i + 1] = (byte) (bits >> 8);
        }
    }

    @Test
    void nonFiniteActivationsAreAnErrorNamingPositionAndLayer() throws IOException {
        // Finite but absurd weights (3e38 in every expert's down_proj of layer 1) overflow inside the forward.
        Path dir = tiny();
        Path shard = dir.resolve("model-00002-of-00002.safetensors");
        SafetensorsWriter w = SafetensorsWriter.copyOf(shard);
        for (int e = 0; e < TinyModel.EXPERTS; e++) {
            fill(w, "model.layers.1.mlp.experts." + e + ".down_proj.weight", 3e38f);
        }
        w.write(shard);
        try (CausalLm m = ModelFamilies.load(dir, pool); KvCache cache = m.newKvCache(8)) {
            float[] logits = new float[m.vocabSize() * 3];
            NonFiniteException e = assertThrows(NonFiniteException.class,
                    () -> m.forward(new int[]{3, 4}, 0, 2, cache, m.newState(2), logits, LogitsMode.LAST, ForwardObserver.NONE));
            // Position 0 happens to stay finite (its activations cancel); position 1 overflows. Deterministic.
            assertEquals(1, e.position(), e.getMessage());
            assertTrue(e.getMessage().contains("position 1") && e.getMessage().contains("after layer 1"), e.getMessage());
            assertEquals(0, cache.length(), "a failed forward commits nothing");
        }
    }

    @Test
    void nonFiniteLogitsNameTheirPosition() throws IOException {
        Path dir = tiny();
        Path shard = dir.resolve("model-00002-of-00002.safetensors");
        SafetensorsWriter w = SafetensorsWriter.copyOf(shard);
        fill(w, "lm_head.weight", 3e38f);
        w.write(shard);
        try (CausalLm m = ModelFamilies.load(dir, pool); KvCache cache = m.newKvCache(8)) {
            float[] logits = new float[m.vocabSize() * 3];
            NonFiniteException e = assertThrows(NonFiniteException.class,
                    () -> m.forward(new int[]{3, 4, 5}, 0, 3, cache, m.newState(3), logits, LogitsMode.LAST, ForwardObserver.NONE));
            assertEquals(2, e.position(), e.getMessage());
            assertTrue(e.getMessage().contains("the logits at position 2"), e.getMessage());
        }
    }

    @Test
    void checkpointTruncatedWhileMappedIsAClearError() throws IOException {
        Path dir = tiny();
        Path shard = dir.resolve("model-00002-of-00002.safetensors");
        ModelConfigJson config = ModelConfigJson.read(dir.resolve("config.json"));
        try (Checkpoint checkpoint = Checkpoint.open(dir)) {
            try (RandomAccessFile f = new RandomAccessFile(shard.toFile(), "rw")) {
                f.setLength(4096); // the mapping stays; its pages past 4 KiB are gone
            }
            CheckpointException e = assertThrows(CheckpointException.class,
                    () -> new Qwen3MoeFamily().load(config, checkpoint, KernelProvider.get(), pool).close());
            assertEquals(Problem.FILE_CHANGED, e.problem(), e.getMessage());
        } catch (InternalError e) {
            throw new AssertionError("a truncated mapping must not surface as InternalError", e);
        }
    }

    @Test
    void aLoadedModelNoLongerMapsItsCheckpoint() throws IOException {
        Path dir = tiny();
        try (CausalLm m = ModelFamilies.load(dir, pool)) {
            assertTrue(!Files.readString(Path.of("/proc/self/maps")).contains(dir.toString()), "checkpoint closed after load");
            // Truncating the files under a loaded model changes nothing.
            try (var files = Files.list(dir)) {
                for (Path f : files.toList()) {
                    if (f.toString().endsWith(".safetensors")) {
                        Files.write(f, new byte[0]);
                    }
                }
            }
            CheckpointFuzzTest.runForward(m, false);
        }
    }
}
