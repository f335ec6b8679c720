package dev.lockstep.verify;

import dev.lockstep.cli.LockstepCli;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.Checkpoint;
import dev.lockstep.memory.CheckpointException;
import dev.lockstep.memory.CheckpointException.Problem;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.memory.SafetensorsFile;
import dev.lockstep.moe.ConfigException;
import dev.lockstep.moe.ModelFamilies;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Broken model directories and files: each must give its specific error (problem kind, and a message naming
 * the file and tensor or key), never a JVM crash or a hang; through the CLI, one line on stderr and exit 2.
 */
class CorruptInputTest {
    static final String SHARD4 = "model-00004-of-00004.safetensors";
    static WorkerPool pool;

    @TempDir
    Path tmp;

    @BeforeAll
    static void pool() {
        pool = new WorkerPool(1);
    }

    @AfterAll
    static void closePool() {
        pool.close();
    }

    /** A copy of the bundled model; tests then break one thing in it. */
    Path copyModel() throws IOException {
        Path dir = tmp.resolve("model");
        Files.createDirectories(dir);
        try (var files = Files.list(Golden.bundledModel())) {
            for (Path f : files.toList()) {
                Files.copy(f, dir.resolve(f.getFileName()), StandardCopyOption.REPLACE_EXISTING);
            }
        }
        return dir;
    }

    static CheckpointException loadFails(Path dir, Problem expected) {
        CheckpointException e = assertThrows(CheckpointException.class, () -> ModelFamilies.load(dir, pool).close());
        assertEquals(expected, e.problem(), e.getMessage());
        return e;
    }

    @Test
    void truncatedShard() throws IOException {
        Path dir = copyModel();
        Path shard = dir.resolve(SHARD4);
        byte[] bytes = Files.readAllBytes(shard);
        Files.write(shard, java.util.Arrays.copyOf(bytes, bytes.length - 1000));
        CheckpointException e = loadFails(dir, Problem.OFFSETS_OUT_OF_RANGE);
        assertTrue(e.getMessage().contains(SHARD4) && e.getMessage().contains("truncated"), e.getMessage());
    }

    @Test
    void headerLengthPastEndOfFile() throws IOException {
        Path f = tmp.resolve("bad.safetensors");
        byte[] bytes = SafetensorsWriter.frame("{}".getBytes(StandardCharsets.UTF_8), new byte[0]);
        bytes[0] = (byte) 0xff;
        bytes[3] = (byte) 0x7f; // header length ~2 GB in a 10-byte file
        Files.write(f, bytes);
        CheckpointException e = assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f));
        assertEquals(Problem.HEADER_LENGTH, e.problem());
        assertTrue(e.getMessage().contains("bad.safetensors"), e.getMessage());
    }

    @Test
    void fileShorterThanHeaderLengthField() throws IOException {
        Path f = tmp.resolve("tiny.safetensors");
        Files.write(f, new byte[]{1, 2, 3});
        assertEquals(Problem.HEADER_LENGTH, assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f)).problem());
    }

    @Test
    void tensorPointingPastEndOfData() throws IOException {
        Path f = tmp.resolve("past.safetensors");
        String header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
        Files.write(f, SafetensorsWriter.frame(header.getBytes(StandardCharsets.UTF_8), new byte[8]));
        CheckpointException e = assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f));
        assertEquals(Problem.OFFSETS_OUT_OF_RANGE, e.problem());
        assertTrue(e.getMessage().contains("'w'"), e.getMessage());
    }

    @Test
    void garbageHeaderJson() throws IOException {
        Path f = tmp.resolve("garbage.safetensors");
        Files.write(f, SafetensorsWriter.frame("{\"w\": [1, 2,".getBytes(StandardCharsets.UTF_8), new byte[16]));
        assertEquals(Problem.HEADER_JSON, assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f)).problem());
    }

    @Test
    void byteLengthNotShapeTimesDtype() throws IOException {
        Path f = tmp.resolve("len.safetensors");
        String header = "{\"w\":{\"dtype\":\"BF16\",\"shape\":[3,3],\"data_offsets\":[0,16]}}";
        Files.write(f, SafetensorsWriter.frame(header.getBytes(StandardCharsets.UTF_8), new byte[16]));
        CheckpointException e = assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f));
        assertEquals(Problem.BYTE_LENGTH, e.problem());
        assertTrue(e.getMessage().contains("needs 18 bytes"), e.getMessage());
    }

    @Test
    void shapeWhoseElementCountOverflowsALongNamesTheTensor() throws IOException {
        Path f = tmp.resolve("overflow.safetensors");
        for (String shape : new String[]{"[4294967296,4294967296]", "[4611686018427387904]"}) { // 2^64 elements; 2^62 x 2 bytes
            String header = "{\"big\":{\"dtype\":\"BF16\",\"shape\":" + shape + ",\"data_offsets\":[0,2]}}";
            Files.write(f, SafetensorsWriter.frame(header.getBytes(StandardCharsets.UTF_8), new byte[2]));
            CheckpointException e = assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f));
            assertEquals(Problem.HEADER_JSON, e.problem());
            assertTrue(e.getMessage().contains("'big'") && e.getMessage().contains("overflows"), e.getMessage());
        }
    }

    @Test
    void overlappingTensors() throws IOException {
        Path f = tmp.resolve("overlap.safetensors");
        String header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
        Files.write(f, SafetensorsWriter.frame(header.getBytes(StandardCharsets.UTF_8), new byte[12]));
        assertEquals(Problem.OVERLAP, assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f)).problem());
    }

    @Test
    void unknownDtypeString() throws IOException {
        Path f = tmp.resolve("dtype.safetensors");
        String header = "{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[2],\"data_offsets\":[0,2]}}";
        Files.write(f, SafetensorsWriter.frame(header.getBytes(StandardCharsets.UTF_8), new byte[2]));
        CheckpointException e = assertThrows(CheckpointException.class, () -> SafetensorsFile.open(f));
        assertEquals(Problem.UNSUPPORTED_DTYPE, e.problem());
        assertTrue(e.getMessage().contains("Q4_K"), e.getMessage());
    }

    @Test
    void wrongDtypeForAWeight() throws IOException {
        Path dir = copyModel();
        SafetensorsWriter w = SafetensorsWriter.copyOf(dir.resolve(SHARD4));
        w.put("model.norm.weight", "F8_E4M3", new long[]{256}, new byte[256]);
        w.write(dir.resolve(SHARD4));
        CheckpointException e = loadFails(dir, Problem.DTYPE_MISMATCH);
        assertTrue(e.getMessage().contains("model.norm.weight") && e.getMessage().contains("F8_E4M3"), e.getMessage());
    }

    @Test
    void nonFiniteWeight() throws IOException {
        Path dir = copyModel();
        SafetensorsWriter w = SafetensorsWriter.copyOf(dir.resolve(SHARD4));
        byte[] norm = w.get("model.norm.weight").data().clone();
        norm[2 * 7] = (byte) 0xc0; // bf16 0x7fc0 = NaN at index 7 (little endian: low byte, high byte)
        norm[2 * 7 + 1] = (byte) 0x7f;
        w.put("model.norm.weight", "BF16", new long[]{256}, norm);
        w.write(dir.resolve(SHARD4));
        CheckpointException e = loadFails(dir, Problem.NON_FINITE);
        assertTrue(e.getMessage().contains("model.norm.weight") && e.getMessage().contains("NaN") && e.getMessage().contains("[0, 7]"),
                e.getMessage());
    }

    @Test
    void missingTensor() throws IOException {
        Path dir = copyModel();
        SafetensorsWriter.copyOf(dir.resolve(SHARD4)).remove("model.norm.weight").write(dir.resolve(SHARD4));
        var mapper = new com.fasterxml.jackson.databind.ObjectMapper();
        var index = (com.fasterxml.jackson.databind.node.ObjectNode) mapper.readTree(dir.resolve(Checkpoint.INDEX_FILE).toFile());
        ((com.fasterxml.jackson.databind.node.ObjectNode) index.get("weight_map")).remove("model.norm.weight");
        mapper.writeValue(dir.resolve(Checkpoint.INDEX_FILE).toFile(), index);
        CheckpointException e = loadFails(dir, Problem.MISSING_TENSOR);
        assertTrue(e.getMessage().contains("model.norm.weight") && e.getMessage().contains("[256]"), e.getMessage());
    }

    @Test
    void indexNamesTensorTheShardLacks() throws IOException {
        Path dir = copyModel();
        SafetensorsWriter.copyOf(dir.resolve(SHARD4)).remove("model.norm.weight").write(dir.resolve(SHARD4));
        CheckpointException e = loadFails(dir, Problem.INDEX_MISMATCH);
        assertTrue(e.getMessage().contains("model.norm.weight") && e.getMessage().contains(SHARD4), e.getMessage());
    }

    @Test
    void wrongShape() throws IOException {
        Path dir = copyModel();
        SafetensorsWriter w = SafetensorsWriter.copyOf(dir.resolve(SHARD4));
        w.put("model.norm.weight", "BF16", new long[]{128}, new byte[256]);
        w.write(dir.resolve(SHARD4));
        CheckpointException e = loadFails(dir, Problem.SHAPE_MISMATCH);
        assertTrue(e.getMessage().contains("model.norm.weight") && e.getMessage().contains("[128]") && e.getMessage().contains("[256]"),
                e.getMessage());
    }

    @Test
    void missingShardFile() throws IOException {
        Path dir = copyModel();
        Files.delete(dir.resolve(SHARD4));
        CheckpointException e = loadFails(dir, Problem.MISSING_FILE);
        assertTrue(e.getMessage().contains(SHARD4), e.getMessage());
    }

    @Test
    void garbageConfigJson() throws IOException {
        Path dir = copyModel();
        Files.writeString(dir.resolve("config.json"), "{\"model_type\": \"qwen3_moe\", ");
        ConfigException e = assertThrows(ConfigException.class, () -> ModelFamilies.load(dir, pool));
        assertTrue(e.getMessage().contains("config.json") && e.getMessage().contains("not valid JSON"), e.getMessage());
    }

    @Test
    void unknownArchitecture() throws IOException {
        Path dir = copyModel();
        String config = Files.readString(dir.resolve("config.json"));
        Files.writeString(dir.resolve("config.json"), config.replace("\"qwen3_moe\"", "\"llama4\""));
        ConfigException e = assertThrows(ConfigException.class, () -> ModelFamilies.load(dir, pool));
        assertTrue(e.getMessage().contains("unsupported architecture 'llama4' (supported: qwen3_moe (Qwen3MoeForCausalLM), mixtral (MixtralForCausalLM),"), e.getMessage());
    }

    @Test
    void badConfigValue() throws IOException {
        Path dir = copyModel();
        String config = Files.readString(dir.resolve("config.json"));
        Files.writeString(dir.resolve("config.json"), config.replace("\"hidden_size\": 256", "\"hidden_size\": -256"));
        ConfigException e = assertThrows(ConfigException.class, () -> ModelFamilies.load(dir, pool));
        assertTrue(e.getMessage().contains("'hidden_size' must be a positive integer, got -256"), e.getMessage());
    }

    @Test
    void configShapeDisagreesWithCheckpoint() throws IOException {
        Path dir = copyModel();
        String config = Files.readString(dir.resolve("config.json"));
        Files.writeString(dir.resolve("config.json"), config.replace("\"moe_intermediate_size\": 128", "\"moe_intermediate_size\": 96"));
        CheckpointException e = loadFails(dir, Problem.SHAPE_MISMATCH);
        assertTrue(e.getMessage().contains("experts.0.gate_proj") && e.getMessage().contains("[96, 256]"), e.getMessage());
    }

    @Test
    void cliReportsOneLineAndExitCode2() throws IOException {
        Path dir = copyModel();
        Path shard = dir.resolve(SHARD4);
        byte[] bytes = Files.readAllBytes(shard);
        Files.write(shard, java.util.Arrays.copyOf(bytes, 100));
        assertOneLineError(new String[]{"generate", "--model", dir.toString(), "--prompt", "In the", "-n", "2"}, SHARD4);
        assertOneLineError(new String[]{"inspect", "--model", tmp.resolve("nope").toString()}, "does not exist");
        assertOneLineError(new String[]{"generate", "--bogus"}, "Unknown option: '--bogus'");
        assertOneLineError(new String[]{"generate", "-n", "many"}, "'many' is not an int");
        assertOneLineError(new String[]{"generate", "--model", Golden.bundledModel().toString(), "--prompt", "x", "--top-p", "0"}, "top-p");
    }

    static void assertOneLineError(String[] args, String expectedFragment) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = LockstepCli.run(args, new PrintWriter(out), new PrintWriter(err));
        String message = err.toString().strip();
        assertEquals(LockstepCli.EXIT_USER_ERROR, code, message);
        String first = message.lines().findFirst().orElse("");
        assertTrue(first.startsWith("lockstep: ") && first.contains(expectedFragment), message);
        assertFalse(message.contains("\tat "), "no stack trace without --verbose: " + message);
        assertTrue(message.lines().count() <= 2, "one line (plus a usage hint for option errors): " + message);
    }

    @Test
    void missingOrCorruptTokenizer() throws IOException {
        Path dir = copyModel();
        Files.delete(dir.resolve("tokenizer.json"));
        assertOneLineError(new String[]{"generate", "--model", dir.toString(), "--prompt", "In the", "-n", "2"}, "tokenizer.json: no such file");
        Files.writeString(dir.resolve("tokenizer.json"), "{\"model\": {\"type\": \"nonsense\"");
        assertOneLineError(new String[]{"generate", "--model", dir.toString(), "--prompt", "In the", "-n", "2"}, "tokenizer.json: not valid JSON");
    }

    @Test
    void errorsAreLockstepExceptions() {
        assertTrue(LockstepException.class.isAssignableFrom(CheckpointException.class));
        assertTrue(LockstepException.class.isAssignableFrom(ConfigException.class));
    }
}
