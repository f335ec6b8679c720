package dev.lockstep.verify;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.Generation;
import dev.lockstep.engine.SamplingParams;
import dev.lockstep.engine.Session;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

/**
 * The engine's promise under load: a seeded request gives the same tokens whatever else runs at the same time. Each
 * request is first run alone, then all of them at once from many threads (the scheduler batches their steps in
 * whatever combination the timing gives), some cancelled midway; every one that completes gives the same tokens.
 */
class BatchInvarianceUnderLoadTest {
    private static final String[] PROMPTS = {"In the beginning God created", "And the LORD said unto Moses,", "Blessed are the",
            "The LORD is my shepherd;", "And it came to pass"};

    @Test
    void seededRequestsGiveTheirAloneTokensUnderConcurrentLoad() throws Exception {
        int requests = Boolean.getBoolean("lockstep.stress") ? 512 : 128;
        try (Engine engine = Engine.load(Golden.bundledModel(), EngineOptions.defaults())) {
            Random random = new Random(11);
            List<GenerateRequest> all = new ArrayList<>();
            List<int[]> alone = new ArrayList<>();
            for (int i = 0; i < requests; i++) {
                float temperature = i % 4 == 0 ? 0f : 0.8f;
                GenerateRequest g = GenerateRequest.of(engine.tokenizer().encode(PROMPTS[random.nextInt(PROMPTS.length)]), 8 + random.nextInt(17))
                        .withSampling(new SamplingParams(temperature, 0, 1f, random.nextLong()));
                all.add(g);
                try (Session s = engine.newSession()) {
                    alone.add(s.submit(g).await().tokens());
                }
            }
            ConcurrentLinkedQueue<String> failures = new ConcurrentLinkedQueue<>();
            ExecutorService pool = Executors.newFixedThreadPool(32);
            List<Future<?>> futures = new ArrayList<>();
            for (int i = 0; i < requests; i++) {
                final int index = i;
                futures.add(pool.submit(() -> {
                    try (Session s = engine.newSession()) {
                        Generation gen = s.submit(all.get(index));
                        if (index % 3 == 2) {
                            gen.next();
                            gen.cancel();
                        }
                        Generation.Completion c = gen.await();
                        int[] got = c.tokens();
                        int[] want = alone.get(index);
                        boolean prefix = got.length <= want.length && Arrays.equals(got, Arrays.copyOf(want, got.length));
                        if (index % 3 == 2 ? !prefix : !Arrays.equals(got, want)) {
                            failures.add("request " + index + " (" + c.finishReason() + (c.error() != null ? " " + c.error() : "") + "): " + Arrays.toString(got) + " vs alone " + Arrays.toString(want));
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> f : futures) {
                f.get();
            }
            pool.shutdown();
            assertTrue(failures.isEmpty(), failures.size() + " of " + requests + " differ; first: " + failures.peek());
        }
    }
}
