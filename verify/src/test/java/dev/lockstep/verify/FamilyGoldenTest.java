package dev.lockstep.verify;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.Session;
import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.memory.SafetensorsFile;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ExecutionPlan;
import dev.lockstep.moe.ForwardBatch;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LoadOptions;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.kv.KvCache;
import dev.lockstep.moe.kv.PagedKvCache;
import dev.lockstep.memory.KvPagePool;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Every family's tiny checkpoint ({@code ../shared/reference/tiny/<family>}, copied into test resources) against HF
 * transformers 5.17: logits at every position of p0 within relative L2 1e-4 with the same argmax, hidden states
 * (embedding, layer 0's output, the final norm's) within 1e-4, the 12 greedy tokens identical; and the engine's
 * paths bit-identical to a sequence run alone: on 1 thread and 2, batched with other sequences, through the prefix
 * cache, forked, and on a compiled schedule of 2 workers (experts by expert and by rows). Sequences of 40 tokens cross KV page
 * boundaries and, for gpt-oss, leave its 8-position window behind by more than a page.
 */
class FamilyGoldenTest {
    static final double TOLERANCE = 1e-4;

    static Path tiny(String family) {
        try {
            var url = FamilyGoldenTest.class.getResource("/tiny/" + family + "/config.json");
            if (url == null) {
                throw new IllegalStateException("missing test resource tiny/" + family);
            }
            return Path.of(url.toURI()).getParent();
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    static JsonNode goldenJson(String family) {
        try {
            return new ObjectMapper().readTree(Files.readString(tiny(family).resolve("golden.json")));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"qwen3_moe", "mixtral", "qwen2_moe", "olmoe", "granitemoe", "gpt_oss", "deepseek_v3"})
    void logitsHiddenStatesAndGreedyTokensMatchHf(String family) {
        JsonNode golden = goldenJson(family);
        int[] tokens = Golden.intArray(golden.get("prompts").get("p0"));
        int[] greedy = Golden.intArray(golden.get("greedy").get("p0"));
        try (WorkerPool pool = new WorkerPool(2); CausalLm model = ModelFamilies.load(tiny(family), pool);
             SafetensorsFile g = SafetensorsFile.open(tiny(family).resolve("golden.safetensors"))) {
            int vocab = model.vocabSize();
            Map<Integer, float[]> hidden = new HashMap<>();
            float[] ours = new float[tokens.length * vocab];
            try (KvCache cache = model.newKvCache(tokens.length)) {
                model.forward(tokens, 0, tokens.length, cache, model.newState(tokens.length), ours, LogitsMode.ALL, new ForwardObserver() {
                    @Override
                    public void onHidden(int index, float[] h, int nTokens, int hiddenSize) {
                        hidden.put(index, Arrays.copyOf(h, nTokens * hiddenSize));
                    }
                });
            }
            float[] theirs = Golden.floats(g, "logits.p0");
            assertEquals(theirs.length, ours.length);
            for (int t = 0; t < tokens.length; t++) {
                double err = Golden.relL2(ours, t * vocab, theirs, t * vocab, vocab);
                assertTrue(err <= TOLERANCE, family + " position " + t + ": relative L2 " + err + " > " + TOLERANCE);
                assertEquals(Golden.argmax(theirs, t * vocab, vocab), Golden.argmax(ours, t * vocab, vocab), family + " argmax at position " + t);
            }
            for (int i = 0; i <= 2; i++) {
                float[] expected = Golden.floats(g, "hidden.p0." + i);
                double err = Golden.relL2(hidden.get(i), 0, expected, 0, expected.length);
                assertTrue(err <= TOLERANCE, family + " hidden." + i + ": relative L2 " + err);
            }
            assertArrayEquals(greedy, Golden.greedy(model, tokens, greedy.length), family + ": 12 greedy tokens");
        }
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"qwen3_moe", "mixtral", "qwen2_moe", "olmoe", "granitemoe", "gpt_oss", "deepseek_v3"})
    void batchedPrefixCachedForkedAndScheduledAreBitIdenticalToAlone(String family) {
        int[] system = Golden.randomTokens(10, 35, 4096), user = Golden.randomTokens(11, 5, 4096);
        int[] whole = SessionTest.concat(system, user);
        try (WorkerPool pool = new WorkerPool(2); CausalLm model = ModelFamilies.load(tiny(family), pool)) {
            int vocab = model.vocabSize();
            float[] alone = DecodeConsistencyTest.logitsInBlocks(model, whole, whole.length);
            assertArrayEquals(alone, DecodeConsistencyTest.logitsInBlocks(model, whole, 1), family + ": decode token by token");
            assertArrayEquals(alone, DecodeConsistencyTest.logitsInBlocks(model, whole, 7), family + ": prefill in blocks of 7");
            assertArrayEquals(alone, batched(model, whole), family + ": batched with two other sequences");
            try (WorkerPool one = new WorkerPool(1); CausalLm single = ModelFamilies.load(tiny(family), one)) {
                assertArrayEquals(alone, DecodeConsistencyTest.logitsInBlocks(single, whole, 1), family + ": 1 thread vs 2");
            }
            for (ExecutionPlan plan : List.of(ExecutionPlan.scheduled(2, ExecutionPlan.Placement.EXPERTS, false),
                    ExecutionPlan.scheduled(2, ExecutionPlan.Placement.ROWS, false), ExecutionPlan.disaggregated(2, 2, false))) {
                try (CausalLm scheduled = ModelFamilies.load(ModelFamilies.readConfig(tiny(family)), KernelProvider.get(), pool,
                        LoadOptions.DEFAULT.withExecution(plan))) {
                    assertArrayEquals(alone, DecodeConsistencyTest.logitsInBlocks(scheduled, whole, 9), family + ": " + plan);
                    assertArrayEquals(alone, DecodeConsistencyTest.logitsInBlocks(scheduled, whole, 1), family + ": decoding, " + plan);
                    if (plan.isDisaggregated()) {
                        assertArrayEquals(alone, batched(scheduled, whole), family + ": batched with two other sequences, " + plan);
                    }
                }
            }
            float[] last = Arrays.copyOfRange(alone, (whole.length - 1) * vocab, whole.length * vocab);
            EngineOptions colocated = new EngineOptions(2).withKernelWarmup(false);
            for (EngineOptions options : List.of(colocated,
                    colocated.withLoad(LoadOptions.DEFAULT.withExecution(ExecutionPlan.disaggregated(2, 2, false))))) {
                String how = family + ", " + options.load().execution();
                try (Engine engine = Engine.load(tiny(family), options)) {
                    try (Session first = engine.newSession(64)) {
                        assertArrayEquals(last, first.append(whole).clone(), how + ": a session");
                    }
                    long hits = engine.prefixCache().hitPages();
                    try (Session second = engine.newSession(64)) {
                        assertArrayEquals(last, second.append(whole).clone(), how + ": through the prefix cache");
                        assertTrue(engine.prefixCache().hitPages() > hits, how + ": the prefix cache was hit");
                    }
                    try (Session parent = engine.newSession(64)) {
                        parent.append(system);
                        try (Session child = parent.fork()) {
                            assertArrayEquals(last, child.append(user).clone(), how + ": forked");
                        }
                        // rollback: append the user turn, roll back to the system prompt, append it again
                        parent.append(user);
                        parent.rollback(user.length);
                        assertArrayEquals(last, parent.append(user).clone(), how + ": rolled back and appended again");
                    }
                }
            }
        }
    }

    /** {@code tokens}' logits computed in chunks batched with two other sequences at other positions. */
    static float[] batched(CausalLm model, int[] tokens) {
        int vocab = model.vocabSize();
        int[][] seqs = {tokens, Golden.randomTokens(5, 23, vocab), Golden.randomTokens(6, 31, vocab)};
        float[] got = new float[tokens.length * vocab];
        try (KvPagePool kv = model.newKvPagePool(MemoryTier.HBM, 32)) {
            PagedKvCache[] caches = {new PagedKvCache(kv, 64), new PagedKvCache(kv, 64), new PagedKvCache(kv, 64)};
            ForwardBatch batch = new ForwardBatch(3);
            ForwardState state = model.newState(16);
            float[] logits = new float[16 * vocab];
            int[] done = new int[3];
            for (int round = 0; done[0] < tokens.length; round++) {
                batch.clear();
                int[] chunk = new int[3];
                for (int q = 0; q < 3; q++) {
                    chunk[q] = Math.min(1 + (round + 2 * q) % 5, seqs[q].length - done[q]);
                    if (chunk[q] > 0) {
                        batch.add(batch.addSequence(caches[q]), seqs[q], done[q], chunk[q], LogitsMode.ALL);
                    }
                }
                model.forward(batch, state, logits, ForwardObserver.NONE);
                System.arraycopy(logits, 0, got, done[0] * vocab, chunk[0] * vocab);
                for (int q = 0; q < 3; q++) {
                    done[q] += Math.max(0, chunk[q]);
                }
            }
            for (PagedKvCache c : caches) {
                c.close();
            }
        }
        return got;
    }
}
