package dev.lockstep.verify;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.Generation;
import dev.lockstep.engine.Session;
import dev.lockstep.moe.DisaggregationStats;
import dev.lockstep.moe.ExecutionPlan;
import dev.lockstep.moe.LoadOptions;
import dev.lockstep.moe.qwen3.Qwen3MoeSynthesizer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Serving through the engine (scheduler, continuous batching, prefix cache) with attention-FFN disaggregation:
 * 1..16 sessions generating greedily at once give the tokens the colocated engine gives, on the bundled model and on
 * a synthetic Qwen3-MoE, with its weights as stored and quantized to NVFP4 at load.
 */
class DisaggregatedServingTest {
    private static final String[] PROMPTS = {"In the beginning God created", "And the LORD said unto Moses,", "Blessed are the",
            "The LORD is my shepherd;", "And it came to pass", "For God so loved"};

    @TempDir
    static Path tmp;
    static Path synth;

    @BeforeAll
    static void writeSynth() {
        synth = tmp.resolve("synth");
        Qwen3MoeSynthesizer.write(new Qwen3MoeSynthesizer.Shape(2, 256, 16, 4, 128, 4, 2, 64, 4096), 3, Golden.bundledModel(), synth,
                dev.lockstep.memory.Progress.NONE);
    }

    @ParameterizedTest(name = "{0}, {1}, A/F = {2}/{3}, {4} sessions")
    @CsvSource({"bundled, bf16, 1, 1, 1", "bundled, bf16, 1, 2, 4", "bundled, bf16, 2, 1, 16", "bundled, bf16, 2, 2, 16",
            "bundled, nvfp4, 2, 2, 8", "synth, bf16, 2, 2, 16", "synth, nvfp4, 1, 2, 8"})
    void concurrentGreedySessionsGiveTheColocatedTokens(String model, String weights, int attention, int ffn, int sessions) throws Exception {
        Path dir = model.equals("bundled") ? Golden.bundledModel() : synth;
        LoadOptions load = weights.equals("nvfp4") ? new LoadOptions(true, false, List.of()) : LoadOptions.DEFAULT;
        EngineOptions colocated = new EngineOptions(1).withKernelWarmup(false).withLoad(load);
        List<int[]> expected = generate(dir, colocated, sessions);
        EngineOptions disaggregated = colocated.withLoad(load.withExecution(ExecutionPlan.disaggregated(attention, ffn, false)));
        try (Engine engine = Engine.load(dir, disaggregated)) {
            List<int[]> got = generate(engine, sessions);
            for (int i = 0; i < sessions; i++) {
                assertArrayEquals(expected.get(i), got.get(i), "session " + i);
            }
            DisaggregationStats st = engine.model().disaggregationStats();
            for (int w = attention; w < attention + ffn; w++) {
                assertTrue(st.partsComputed()[w] > 0, "FFN worker " + w + " computed experts: " + Arrays.toString(st.partsComputed()));
            }
            if (sessions > 2 * attention) {
                assertTrue(st.pingPongSteps() > 0, "micro-batches ping-ponged in " + st.steps() + " steps");
                assertTrue(st.overlapNanos() >= 0 && st.attentionBusyNanos() > 0 && st.ffnBusyNanos() > 0, st.toString());
            }
        }
    }

    private static List<int[]> generate(Path dir, EngineOptions options, int sessions) throws Exception {
        try (Engine engine = Engine.load(dir, options)) {
            return generate(engine, sessions);
        }
    }

    /** {@code sessions} greedy requests of 20 tokens submitted at once from as many threads. */
    private static List<int[]> generate(Engine engine, int sessions) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(sessions);
        try {
            List<Future<int[]>> futures = new ArrayList<>();
            for (int i = 0; i < sessions; i++) {
                int[] prompt = engine.tokenizer().encode(PROMPTS[i % PROMPTS.length] + " " + i);
                futures.add(pool.submit(() -> {
                    try (Session s = engine.newSession()) {
                        Generation g = s.submit(GenerateRequest.of(prompt, 20));
                        return g.await().tokens();
                    }
                }));
            }
            List<int[]> out = new ArrayList<>();
            for (Future<int[]> f : futures) {
                out.add(f.get());
            }
            return out;
        } finally {
            pool.shutdown();
        }
    }
}
