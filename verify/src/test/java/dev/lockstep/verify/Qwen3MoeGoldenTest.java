package dev.lockstep.verify;

import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.SafetensorsFile;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.kv.KvCache;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The bundled model against HF transformers goldens (reference/README.md tolerances): logits per position
 * within relative L2 1e-4 and the same argmax, hidden states within 1e-4, router top-4 sets equal,
 * 48 greedy tokens identical.
 */
class Qwen3MoeGoldenTest {
    static final double TOLERANCE = 1e-4;
    static WorkerPool pool;
    static CausalLm model;
    static SafetensorsFile golden;

    @BeforeAll
    static void load() {
        pool = new WorkerPool(2);
        model = ModelFamilies.load(Golden.bundledModel(), pool);
        golden = SafetensorsFile.open(Golden.resource("golden.safetensors"));
    }

    @AfterAll
    static void close() {
        golden.close();
        model.close();
        pool.close();
    }

    static float[] allLogits(int[] tokens, ForwardObserver observer) {
        int vocab = model.vocabSize();
        float[] logits = new float[tokens.length * vocab];
        try (KvCache cache = model.newKvCache(tokens.length)) {
            model.forward(tokens, 0, tokens.length, cache, model.newState(tokens.length), logits, LogitsMode.ALL, observer);
        }
        return logits;
    }

    @ParameterizedTest
    @ValueSource(strings = {"p0", "p1"})
    void logitsMatchAtEveryPosition(String prompt) {
        int[] tokens = Golden.intArray(Golden.json("golden.json").get("prompts").get(prompt));
        float[] ours = allLogits(tokens, ForwardObserver.NONE);
        float[] theirs = Golden.floats(golden, "logits." + prompt);
        int vocab = model.vocabSize();
        assertEquals(theirs.length, ours.length);
        for (int t = 0; t < tokens.length; t++) {
            double err = Golden.relL2(ours, t * vocab, theirs, t * vocab, vocab);
            assertTrue(err <= TOLERANCE, prompt + " position " + t + ": relative L2 " + err + " > " + TOLERANCE);
            assertEquals(Golden.argmax(theirs, t * vocab, vocab), Golden.argmax(ours, t * vocab, vocab), prompt + " argmax at position " + t);
        }
    }

    @Test
    void hiddenStatesAndRouterMatchP0() {
        int[] tokens = Golden.intArray(Golden.json("golden.json").get("prompts").get("p0"));
        Map<Integer, float[]> hidden = new HashMap<>();
        Map<Integer, int[]> topk = new HashMap<>();
        Map<Integer, float[]> routerLogits = new HashMap<>();
        allLogits(tokens, new ForwardObserver() {
            @Override
            public void onHidden(int index, float[] h, int nTokens, int hiddenSize) {
                hidden.put(index, Arrays.copyOf(h, nTokens * hiddenSize));
            }

            @Override
            public void onRouter(int layer, float[] logits, int[] topK, int nTokens, int nExperts, int k) {
                routerLogits.put(layer, Arrays.copyOf(logits, nTokens * nExperts));
                topk.put(layer, Arrays.copyOf(topK, nTokens * k));
            }
        });
        assertEquals(7, hidden.size(), "hidden states 0..6");
        for (int i = 0; i <= 6; i++) {
            float[] theirs = Golden.floats(golden, "hidden.p0." + i);
            double err = Golden.relL2(hidden.get(i), 0, theirs, 0, theirs.length);
            assertTrue(err <= TOLERANCE, "hidden." + i + ": relative L2 " + err);
        }
        for (int l = 0; l < 6; l++) {
            float[] theirLogits = Golden.floats(golden, "router_logits.p0." + l);
            double err = Golden.relL2(routerLogits.get(l), 0, theirLogits, 0, theirLogits.length);
            assertTrue(err <= TOLERANCE, "router_logits layer " + l + ": relative L2 " + err);
            int[] theirs = Golden.ints(golden, "router_topk.p0." + l);
            int[] ours = topk.get(l);
            for (int t = 0; t < tokens.length; t++) {
                int[] a = Arrays.copyOfRange(theirs, t * 4, t * 4 + 4);
                int[] b = Arrays.copyOfRange(ours, t * 4, t * 4 + 4);
                Arrays.sort(a);
                Arrays.sort(b);
                assertArrayEquals(a, b, "router top-4 set, layer " + l + " token " + t);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"p0", "p1"})
    void greedyDecodeWithKvCacheMatchesHf(String prompt) {
        int[] tokens = Golden.intArray(Golden.json("golden.json").get("prompts").get(prompt));
        int[] expected = Golden.intArray(Golden.json("golden.json").get("greedy").get(prompt));
        assertArrayEquals(expected, Golden.greedy(model, tokens, expected.length));
    }
}
