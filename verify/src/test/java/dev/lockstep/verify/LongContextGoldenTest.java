package dev.lockstep.verify;

import dev.lockstep.engine.Perplexity;
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

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The 2,048-token held-out prompt (golden_long): argmax at every position, full logits at 5 positions,
 * and the summed NLL of tokens 1..2047, which is what {@code perplexity --window 2048} computes.
 */
class LongContextGoldenTest {
    static WorkerPool pool;
    static CausalLm model;
    static SafetensorsFile golden;
    static int[] tokens;
    static float[] logits;

    @BeforeAll
    static void run() {
        pool = new WorkerPool(2);
        model = ModelFamilies.load(Golden.bundledModel(), pool);
        golden = SafetensorsFile.open(Golden.resource("golden_long.safetensors"));
        tokens = Golden.ints(golden, "long.tokens");
        logits = new float[tokens.length * model.vocabSize()];
        try (KvCache cache = model.newKvCache(tokens.length)) {
            model.forward(tokens, 0, tokens.length, cache, model.newState(tokens.length), logits, LogitsMode.ALL, ForwardObserver.NONE);
        }
    }

    @AfterAll
    static void close() {
        golden.close();
        model.close();
        pool.close();
    }

    @Test
    void argmaxAtEveryPosition() {
        int[] expected = Golden.ints(golden, "long.argmax");
        int vocab = model.vocabSize();
        int mismatches = 0;
        StringBuilder where = new StringBuilder();
        for (int t = 0; t < tokens.length; t++) {
            int ours = Golden.argmax(logits, t * vocab, vocab);
            if (ours != expected[t]) {
                mismatches++;
                where.append(" ").append(t);
            }
        }
        assertEquals(0, mismatches, "argmax differs at positions" + where);
    }

    @Test
    void logitsAtSampledPositions() {
        int[] positions = Golden.ints(golden, "long.positions");
        float[] theirs = Golden.floats(golden, "long.logits_at");
        int vocab = model.vocabSize();
        for (int i = 0; i < positions.length; i++) {
            double err = Golden.relL2(logits, positions[i] * vocab, theirs, i * vocab, vocab);
            assertTrue(err <= Qwen3MoeGoldenTest.TOLERANCE, "position " + positions[i] + ": relative L2 " + err);
        }
    }

    @Test
    void perplexityOverTheWholeWindowMatchesHfNllSum() {
        double expected = Golden.json("golden_long.json").get("long").get("nll_sum_over_2047").asDouble();
        Perplexity.Result r = Perplexity.compute(model, tokens, 2048);
        assertEquals(2047, r.scored());
        // Measured: 11994.238345 vs HF 11994.238682 (3e-8 relative). 1e-6 leaves room for float32 reordering only.
        assertEquals(expected, r.nllSum(), expected * 1e-6, "nll sum");
    }
}
