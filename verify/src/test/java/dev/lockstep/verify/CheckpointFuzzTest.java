package dev.lockstep.verify;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.NonFiniteException;
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
import java.util.EnumMap;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Seeded fuzzer over whole model directories (config.json, shard index, safetensors headers and data):
 * 2,000 mutated loads by default ({@code -Dlockstep.fuzz.loads=N}; 20,000 with {@code -Dlockstep.stress=true}).
 * Each mutant either loads and runs a forward (finite logits, or a {@link NonFiniteException}) or fails with
 * one of the project's documented exceptions ({@link LockstepException} and its subclasses). Anything else
 * (an IndexOutOfBounds, an OutOfMemoryError, an InternalError, a crash) fails the test, printing the seed
 * and the mutation; and no mapping of any mutated file may outlive its load.
 */
class CheckpointFuzzTest {
    static WorkerPool pool;
    static final String[] CONFIG_KEYS = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "head_dim", "num_experts", "num_experts_per_tok", "moe_intermediate_size",
            "intermediate_size", "rms_norm_eps", "rope_theta", "max_position_embeddings", "decoder_sparse_step",
            "mlp_only_layers", "tie_word_embeddings", "model_type", "norm_topk_prob"};

    enum Kind { HEADER_BYTES, DATA_BYTES, TRUNCATE, HEADER_LENGTH, CONFIG_TREE, CONFIG_VALUE, INDEX_TREE, HEADER_PADDING }

    @TempDir
    static Path tmp;
    static Path base;

    @BeforeAll
    static void setUp() {
        pool = new WorkerPool(2);
        base = TinyModel.write(tmp.resolve("base"), 7);
    }

    @AfterAll
    static void tearDown() {
        pool.close();
    }

    @Test
    void theUnmutatedTinyModelLoadsAndRuns() {
        try (CausalLm m = ModelFamilies.load(base, pool)) {
            runForward(m, false); // the reference: finite logits, a NonFiniteException here is a failure
        }
    }

    @Test
    void mutatedModelDirectoriesFailOnlyWithDocumentedErrors() throws IOException {
        int rounds = Integer.getInteger("lockstep.fuzz.loads", Boolean.getBoolean("lockstep.stress") ? 20_000 : 2_000);
        long seed = Long.getLong("lockstep.fuzz.seed", 20261129L);
        SplittableRandom random = new SplittableRandom(seed);
        Map<Kind, int[]> outcomes = new EnumMap<>(Kind.class); // [loaded, refused]
        Map<String, Integer> messages = new TreeMap<>();
        Path dir = tmp.resolve("mutant");
        for (int round = 0; round < rounds; round++) {
            copy(base, dir);
            Kind kind = Kind.values()[random.nextInt(Kind.values().length)];
            String what = mutate(dir, kind, random);
            int[] o = outcomes.computeIfAbsent(kind, k -> new int[2]);
            try (CausalLm m = ModelFamilies.load(dir, pool)) {
                runForward(m, true);
                o[0]++;
            } catch (LockstepException e) {
                o[1]++;
                String m = e.getMessage() == null ? "" : e.getMessage();
                assertTrue(m.contains(dir.toString()) || e instanceof NonFiniteException, "error names the file: " + m);
                messages.merge(e.getClass().getSimpleName(), 1, Integer::sum);
            } catch (Throwable t) {
                fail("round " + round + " (seed " + seed + "), " + kind + ": " + what + " -> undocumented " + t, t);
            }
            assertNoMapping(dir, round, what);
        }
        System.out.println("checkpoint fuzz: " + rounds + " loads; per mutation [loaded, refused]: "
                + outcomes.entrySet().stream().map(e -> e.getKey() + "=" + java.util.Arrays.toString(e.getValue())).toList()
                + "; errors " + messages);
        int refused = outcomes.values().stream().mapToInt(o -> o[1]).sum();
        assertTrue(refused > rounds / 3, "most mutants are refused: " + refused);
    }

    /**
     * A forward of three tokens: finite logits, or (a mutant's weights may overflow: {@code mutant}) a
     * {@link NonFiniteException} naming one of the three positions.
     */
    static void runForward(CausalLm m, boolean mutant) {
        try (KvCache cache = m.newKvCache(8)) {
            float[] logits = new float[3 * m.vocabSize()];
            m.forward(new int[]{1, 2, 3}, 0, 3, cache, m.newState(3), logits, LogitsMode.ALL, ForwardObserver.NONE);
            for (float v : logits) {
                assertTrue(Float.isFinite(v));
            }
        } catch (NonFiniteException e) {
            if (!mutant) {
                throw new AssertionError("the unmutated model must give finite logits: " + e.getMessage(), e);
            }
            assertTrue(e.position() >= 0 && e.position() < 3, e.getMessage());
        }
    }

    static void copy(Path from, Path to) throws IOException {
        if (Files.exists(to)) {
            try (var files = Files.list(to)) {
                for (Path f : files.toList()) {
                    Files.delete(f);
                }
            }
        }
        Files.createDirectories(to);
        try (var files = Files.list(from)) {
            for (Path f : files.toList()) {
                Files.copy(f, to.resolve(f.getFileName()));
            }
        }
    }

    static Path randomShard(Path dir, SplittableRandom r) {
        return dir.resolve("model-0000" + (1 + r.nextInt(2)) + "-of-00002.safetensors");
    }

    static String mutate(Path dir, Kind kind, SplittableRandom r) throws IOException {
        ObjectMapper json = new ObjectMapper();
        switch (kind) {
            case HEADER_BYTES, DATA_BYTES -> {
                Path shard = randomShard(dir, r);
                byte[] b = Files.readAllBytes(shard);
                long headerLength = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
                int from = kind == Kind.HEADER_BYTES ? 0 : (int) (8 + headerLength);
                int to = kind == Kind.HEADER_BYTES ? (int) (8 + headerLength) : b.length;
                StringBuilder s = new StringBuilder(shard.getFileName() + " bytes");
                for (int n = 1 + r.nextInt(4); n > 0; n--) {
                    int at = from + r.nextInt(to - from);
                    byte v = r.nextInt(3) == 0 ? (byte) "{}[]\",:0123456789 e-".charAt(r.nextInt(20)) : (byte) r.nextInt(256);
                    s.append(" [").append(at).append("]=").append(v);
                    b[at] = v;
                }
                Files.write(shard, b);
                return s.toString();
            }
            case TRUNCATE -> {
                Path shard = randomShard(dir, r);
                byte[] b = Files.readAllBytes(shard);
                int len = r.nextInt(b.length);
                Files.write(shard, java.util.Arrays.copyOf(b, len));
                return shard.getFileName() + " truncated to " + len;
            }
            case HEADER_LENGTH -> {
                Path shard = randomShard(dir, r);
                byte[] b = Files.readAllBytes(shard);
                ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
                long delta = r.nextInt(5) == 0 ? r.nextLong() : r.nextInt(-16, 17);
                bb.putLong(0, bb.getLong(0) + delta);
                Files.write(shard, b);
                return shard.getFileName() + " header length + " + delta;
            }
            case HEADER_PADDING -> {
                // Re-frame the header with extra bytes after the JSON: spaces are legal padding, anything else is not.
                Path shard = randomShard(dir, r);
                byte[] b = Files.readAllBytes(shard);
                int h = (int) ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
                byte[] pad = new byte[1 + r.nextInt(8)];
                byte fill = (byte) " \t\n\u0000x}".charAt(r.nextInt(6));
                java.util.Arrays.fill(pad, fill);
                byte[] header = new byte[h + pad.length];
                System.arraycopy(b, 8, header, 0, h);
                System.arraycopy(pad, 0, header, h, pad.length);
                Files.write(shard, SafetensorsWriter.frame(header, java.util.Arrays.copyOfRange(b, 8 + h, b.length)));
                return shard.getFileName() + " header padded with " + pad.length + " x 0x" + Integer.toHexString(fill);
            }
            case CONFIG_TREE, CONFIG_VALUE -> {
                Path file = dir.resolve("config.json");
                ObjectNode c = (ObjectNode) json.readTree(file.toFile());
                String what;
                if (kind == Kind.CONFIG_TREE) {
                    Mutations.mutate(c, r);
                    what = "config tree mutation";
                } else {
                    String key = CONFIG_KEYS[r.nextInt(CONFIG_KEYS.length)];
                    var v = Mutations.randomValue(r);
                    c.set(key, v);
                    what = "config " + key + " = " + v;
                }
                Files.writeString(file, c.toString());
                return what;
            }
            case INDEX_TREE -> {
                Path file = dir.resolve("model.safetensors.index.json");
                ObjectNode c = (ObjectNode) json.readTree(file.toFile());
                Mutations.mutate(c, r);
                Files.writeString(file, c.toString());
                return "index tree mutation";
            }
        }
        throw new AssertionError(kind);
    }

    /** No file of {@code dir} may still be mapped once its load has ended (successfully or not). */
    static void assertNoMapping(Path dir, int round, String what) throws IOException {
        String maps = Files.readString(Path.of("/proc/self/maps"));
        if (maps.contains(dir.toString())) {
            fail("round " + round + " (" + what + "): a mapping of " + dir + " leaked:\n"
                    + maps.lines().filter(l -> l.contains(dir.toString())).toList());
        }
    }

    @Test
    void mappingCheckCanFail() throws IOException {
        // The leak check above must be able to see a mapping: hold one open and look.
        try (var f = dev.lockstep.memory.SafetensorsFile.open(base.resolve("model-00001-of-00002.safetensors"))) {
            String maps = Files.readString(Path.of("/proc/self/maps"));
            assertTrue(maps.contains(base.toString()), "an open checkpoint shows in /proc/self/maps");
        }
        assertEquals(false, Files.readString(Path.of("/proc/self/maps")).contains(base.toString()));
    }
}
