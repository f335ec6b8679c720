package dev.lockstep.verify;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.SamplingParams;
import dev.lockstep.engine.Session;
import dev.lockstep.engine.StopCondition;
import dev.lockstep.kernels.WorkerPool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * One engine used from many threads: every session's tokens and logits equal a single-threaded run's, bit for
 * bit, at 1 and 2 worker threads; misuse (one session from two threads, use after close) is refused at once,
 * never a hang or a corrupted sequence.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class ConcurrencyTest {
    static final String[] PROMPTS = {"In the beginning God created", "And Moses said unto the LORD", "Blessed are the meek",
            "The LORD is my shepherd", "And it came to pass", "Let there be light"};
    static final int NEW_TOKENS = 12;
    static final int CALLERS = 4;
    static final int ROUNDS = 3;

    record Output(int[] tokens, float[] lastLogits) {
    }

    static Output run(Engine engine, String prompt, long seed) {
        try (Session s = engine.newSession(64)) {
            List<Integer> tokens = new ArrayList<>();
            SamplingParams params = seed < 0 ? SamplingParams.GREEDY : new SamplingParams(0.9f, 40, 0.95f, seed);
            s.generate(engine.tokenizer().encode(prompt), NEW_TOKENS, params, StopCondition.IGNORE_EOS, (id, text) -> {
                if (id >= 0) {
                    tokens.add(id);
                }
            });
            // The logits of the last position: append() feeds the last generated token.
            float[] logits = s.append().clone();
            return new Output(tokens.stream().mapToInt(Integer::intValue).toArray(), logits);
        }
    }

    @ParameterizedTest(name = "{0} worker threads")
    @ValueSource(ints = {1, 2})
    void sessionsOnManyThreadsMatchSingleThreadedRuns(int workers) throws Exception {
        Output[] expected = new Output[PROMPTS.length];
        try (Engine engine = Engine.load(Golden.bundledModel(), new EngineOptions(1))) {
            for (int p = 0; p < PROMPTS.length; p++) {
                expected[p] = run(engine, PROMPTS[p], p % 2 == 0 ? -1 : p);
            }
        }
        try (Engine engine = Engine.load(Golden.bundledModel(), new EngineOptions(workers));
             ExecutorService callers = Executors.newFixedThreadPool(CALLERS)) {
            List<Future<?>> futures = new ArrayList<>();
            CountDownLatch start = new CountDownLatch(1);
            for (int c = 0; c < CALLERS; c++) {
                int caller = c;
                futures.add(callers.submit(() -> {
                    start.await();
                    for (int round = 0; round < ROUNDS; round++) {
                        int p = (caller + round * CALLERS) % PROMPTS.length;
                        Output got = run(engine, PROMPTS[p], p % 2 == 0 ? -1 : p);
                        assertArrayEquals(expected[p].tokens(), got.tokens(), "caller " + caller + " round " + round + " prompt " + p);
                        assertArrayEquals(expected[p].lastLogits(), got.lastLogits(), "logits, prompt " + p);
                    }
                    return null;
                }));
            }
            start.countDown();
            for (Future<?> f : futures) {
                f.get();
            }
        }
    }

    @Test
    void oneSessionFromTwoThreadsIsRefusedAndKeepsItsPositions() throws Exception {
        try (Engine engine = Engine.load(Golden.bundledModel(), new EngineOptions(2));
             Session session = engine.newSession(64)) {
            int[] prompt = engine.tokenizer().encode(PROMPTS[0]);
            CountDownLatch inside = new CountDownLatch(1), release = new CountDownLatch(1);
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread a = Thread.ofPlatform().start(() -> {
                try {
                    session.generate(prompt, 4, SamplingParams.GREEDY, StopCondition.IGNORE_EOS, (id, text) -> {
                        inside.countDown();
                        try {
                            release.await();
                        } catch (InterruptedException e) {
                            throw new RuntimeException(e);
                        }
                    });
                } catch (Throwable t) {
                    failure.set(t);
                }
            });
            assertTrue(inside.await(30, TimeUnit.SECONDS));
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> session.append(1));
            assertTrue(e.getMessage().contains("in use by thread"), e.getMessage());
            assertThrows(IllegalStateException.class, () -> session.rollback(0));
            assertThrows(IllegalStateException.class, session::close);
            release.countDown();
            a.join();
            assertEquals(null, failure.get());
            // Prompt plus four generated tokens: nothing lost, nothing added by the refused calls.
            assertEquals(prompt.length + 4, session.length());
        }
    }

    @Test
    void closeRules() {
        Engine engine = Engine.load(Golden.bundledModel(), new EngineOptions(2));
        Session s = engine.newSession(16);
        s.close();
        s.close(); // a second close does nothing
        assertThrows(IllegalStateException.class, () -> s.append(1));
        Session open = engine.newSession(16);
        engine.close();
        engine.close();
        assertTrue(engine.isClosed());
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> engine.newSession(16));
        assertTrue(e.getMessage().contains("engine is closed"), e.getMessage());
        assertThrows(IllegalStateException.class, () -> open.append(1));
        assertThrows(IllegalStateException.class, () -> engine.tokenizer().encode("x"));
        open.close();
    }

    @Test
    void closingTheEngineUnderARunningGenerationStopsItCleanly() throws Exception {
        Engine engine = Engine.load(Golden.bundledModel(), new EngineOptions(2));
        Session session = engine.newSession(64);
        CountDownLatch inside = new CountDownLatch(1), closed = new CountDownLatch(1);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread a = Thread.ofPlatform().start(() -> {
            try {
                session.generate(engine.tokenizer().encode(PROMPTS[1]), 32, SamplingParams.GREEDY, StopCondition.IGNORE_EOS, (id, text) -> {
                    inside.countDown();
                    try {
                        closed.await();
                    } catch (InterruptedException e) {
                        throw new RuntimeException(e);
                    }
                });
            } catch (Throwable t) {
                failure.set(t);
            }
        });
        assertTrue(inside.await(30, TimeUnit.SECONDS));
        engine.close();
        closed.countDown();
        a.join();
        assertTrue(failure.get() instanceof IllegalStateException, String.valueOf(failure.get()));
        session.close();
    }

    @Test
    void workerPoolRefusesASecondDispatcherInsteadOfHanging() throws Exception {
        try (WorkerPool pool = new WorkerPool(2)) {
            CountDownLatch inside = new CountDownLatch(1), release = new CountDownLatch(1);
            Thread a = Thread.ofPlatform().start(() -> pool.forRange(2, (w, s, e) -> {
                if (w == 0) {
                    inside.countDown();
                    try {
                        release.await();
                    } catch (InterruptedException x) {
                        throw new RuntimeException(x);
                    }
                }
            }));
            assertTrue(inside.await(30, TimeUnit.SECONDS));
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> pool.forRange(4, (w, s, x) -> { }));
            assertTrue(e.getMessage().contains("while thread"), e.getMessage());
            release.countDown();
            a.join();
            int[] hits = new int[8];
            pool.forRange(8, (w, s, x) -> {
                for (int i = s; i < x; i++) {
                    hits[i]++;
                }
            });
            assertEquals("[1, 1, 1, 1, 1, 1, 1, 1]", Arrays.toString(hits), "the pool still works");
        }
    }
}
