package dev.lockstep.verify;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.SamplingParams;
import dev.lockstep.engine.Session;
import dev.lockstep.engine.StopCondition;
import dev.lockstep.memory.KvPoolExhaustedException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Sessions on the scheduler: logits bit-identical whether a prefix was computed fresh, forked, or taken from
 * the prefix cache, and whether the session decodes alone or batched with up to 32 others; a full pool fails
 * one request and nothing else; every page comes back.
 */
class SessionTest {
    static Engine engine;
    static int vocab;

    @BeforeAll
    static void load() {
        engine = Engine.load(Golden.bundledModel(), new EngineOptions(2));
        vocab = engine.model().vocabSize();
    }

    @AfterAll
    static void close() {
        engine.close();
    }

    static int[] tokens(long seed, int n) {
        return Golden.randomTokens(seed, n, vocab);
    }

    /** The logits of the last position of {@code tokens}, computed alone in one block. */
    static float[] solo(int[] tokens) {
        float[] all = DecodeConsistencyTest.logitsInBlocks(engine.model(), tokens, tokens.length);
        return Arrays.copyOfRange(all, (tokens.length - 1) * vocab, tokens.length * vocab);
    }

    static int[] concat(int[] a, int[] b) {
        int[] c = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    @Test
    void prefixFromTheCacheFromAForkAndFreshGiveTheSameBits() {
        int[] system = tokens(10, 50), user = tokens(11, 7);
        float[] expected = solo(concat(system, user));
        long hits0 = engine.prefixCache().hitPages();
        try (Session first = engine.newSession(256)) {
            assertArrayEquals(expected, first.append(concat(system, user)).clone(), "fresh");
        }
        try (Session second = engine.newSession(256)) {
            assertArrayEquals(expected, second.append(concat(system, user)).clone(), "prefix from the cache");
            assertEquals(3, engine.prefixCache().hitPages() - hits0, "the 3 full pages of the system prompt were reused");
        }
        try (Session parent = engine.newSession(256)) {
            parent.append(system);
            try (Session child = parent.fork()) {
                assertArrayEquals(expected, child.append(user).clone(), "forked");
                assertArrayEquals(expected, parent.append(user).clone(), "the parent after its child wrote the shared page");
            }
        }
    }

    @Test
    void samplingStateIsTheSessionsAcrossCallsAndForks() {
        SamplingParams params = new SamplingParams(1.0f, 0, 1f, 77);
        int[] prompt = tokens(40, 9);
        int[] whole, halves, forked;
        try (Session s = engine.newSession(128)) {
            whole = collect(s, prompt, 16, params);
        }
        try (Session s = engine.newSession(128)) {
            int[] a = collect(s, prompt, 8, params);
            try (Session child = s.fork()) {
                forked = concat(a, collect(child, new int[0], 8, params));
            }
            halves = concat(a, collect(s, new int[0], 8, params));
        }
        assertArrayEquals(whole, halves, "two calls continue one random stream");
        assertArrayEquals(whole, forked, "a fork continues from its parent's point");
    }

    static int[] collect(Session s, int[] prompt, int n, SamplingParams params) {
        List<Integer> out = new ArrayList<>();
        s.generate(prompt, n, params, StopCondition.IGNORE_EOS, (id, t) -> {
            if (id >= 0) {
                out.add(id);
            }
        });
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    @Test
    void generateThenRollbackAndRegenerateIsExact() {
        int[] prompt = tokens(12, 21);
        try (Session s = engine.newSession(256)) {
            List<Integer> a = new ArrayList<>();
            s.generate(prompt, 12, SamplingParams.GREEDY, StopCondition.IGNORE_EOS, (id, t) -> {
                if (id >= 0) {
                    a.add(id);
                }
            });
            assertEquals(prompt.length + 12, s.length());
            int[] context = s.tokens();
            assertArrayEquals(solo(context), s.append().clone(), "logits of the whole context");
            s.rollback(5);
            List<Integer> b = new ArrayList<>();
            s.generate(new int[0], 5, SamplingParams.GREEDY, StopCondition.IGNORE_EOS, (id, t) -> {
                if (id >= 0) {
                    b.add(id);
                }
            });
            assertEquals(a.subList(7, 12), b, "the rolled-back tokens come again");
            assertArrayEquals(context, s.tokens());
        }
    }

    @Test
    void sessionsBatchedTogetherGetTheirSoloTokensAndLogits() throws Exception {
        int sessions = 33; // one target and 32 batch mates
        int[][] prompts = new int[sessions][];
        int[][] expectedTokens = new int[sessions][];
        float[][] expectedLogits = new float[sessions][];
        SamplingParams sampled = new SamplingParams(0.9f, 40, 0.95f, 5);
        for (int i = 0; i < sessions; i++) {
            prompts[i] = tokens(200 + i, 3 + i % 17);
        }
        long solos = 0;
        for (int i : new int[]{0, 1, 31, 32}) { // spot checks run alone, one at a time
            long before = engine.schedulerSteps();
            Object[] r = generate(prompts[i], i % 2 == 0 ? SamplingParams.GREEDY : sampled);
            solos += engine.schedulerSteps() - before;
            expectedTokens[i] = (int[]) r[0];
            expectedLogits[i] = (float[]) r[1];
        }
        long before = engine.schedulerSteps();
        try (ExecutorService callers = Executors.newFixedThreadPool(sessions)) {
            CountDownLatch start = new CountDownLatch(1);
            List<Future<Object[]>> futures = new ArrayList<>();
            for (int i = 0; i < sessions; i++) {
                int p = i;
                futures.add(callers.submit(() -> {
                    start.await();
                    return generate(prompts[p], p % 2 == 0 ? SamplingParams.GREEDY : sampled);
                }));
            }
            start.countDown();
            for (int i = 0; i < sessions; i++) {
                Object[] r = futures.get(i).get();
                if (expectedTokens[i] != null) {
                    assertArrayEquals(expectedTokens[i], (int[]) r[0], "session " + i + " tokens");
                    assertArrayEquals(expectedLogits[i], (float[]) r[1], "session " + i + " logits");
                }
            }
        }
        long batchedSteps = engine.schedulerSteps() - before;
        assertTrue(batchedSteps < sessions * solos / 4 / 2, "sessions were batched: " + batchedSteps + " steps for "
                + sessions + " sessions, " + solos / 4 + " steps for one alone");
    }

    /** Generates 24 tokens after {@code prompt}; returns the tokens and the logits of the last position. */
    static Object[] generate(int[] prompt, SamplingParams params) {
        try (Session s = engine.newSession(256)) {
            int[] out = new int[24];
            int[] n = {0};
            s.generate(prompt, 24, params, StopCondition.IGNORE_EOS, (id, t) -> {
                if (id >= 0) {
                    out[n[0]++] = id;
                }
            });
            return new Object[]{out, s.append().clone()};
        }
    }

    @Test
    void aFullPoolFailsOneRequestAndTheOthersGoOn() {
        long pageBytes = engine.model().kvPageBytes();
        try (Engine small = Engine.load(Golden.bundledModel(), new EngineOptions(1).withKvCacheBytes(4 * pageBytes).withPrefixCache(false));
             Session a = small.newSession(); Session b = small.newSession()) {
            a.append(tokens(20, 40)); // 3 pages
            KvPoolExhaustedException e = assertThrows(KvPoolExhaustedException.class, () -> b.append(tokens(21, 33)));
            assertTrue(e.getMessage().contains("KV page pool exhausted"), e.getMessage());
            assertEquals(0, b.length(), "the failed append left nothing behind");
            assertEquals(1, small.kvPool().freePages() + small.kvPool().usedPages() - 3, "b kept no page");
            float[] expected = solo(concat(tokens(20, 40), tokens(22, 5)));
            assertArrayEquals(expected, a.append(tokens(22, 5)).clone(), "a goes on");
            a.close();
            b.append(tokens(21, 33));
            b.close();
            assertEquals(0, small.kvPool().usedPages());
        }
    }

    @Test
    void coldPrefixPagesMoveToDiskAndComeBackBitForBit() {
        long pageBytes = engine.model().kvPageBytes();
        EngineOptions options = new EngineOptions(2).withKvCacheBytes(6 * pageBytes).withKvDiskBytes(32 * pageBytes);
        int[] system = tokens(30, 48), user = tokens(31, 9), other = tokens(32, 80);
        float[] expected = solo(concat(system, user));
        try (Engine small = Engine.load(Golden.bundledModel(), options)) {
            try (Session s = small.newSession()) {
                s.append(concat(system, user)); // 3 full pages of the system prompt go to the prefix cache
            }
            try (Session s = small.newSession()) {
                s.append(other); // 5 pages: the pool (6) must give up cold pages to the disk
            }
            assertTrue(small.prefixCache().spilledPages() >= 2, "spilled " + small.prefixCache().spilledPages());
            try (Session s = small.newSession()) {
                assertArrayEquals(expected, s.append(concat(system, user)).clone(), "prefix partly restored from disk");
            }
            assertTrue(small.prefixCache().restoredPages() >= 1, "restored " + small.prefixCache().restoredPages());
            java.nio.file.Path file = small.kvDisk().file();
            assertTrue(java.nio.file.Files.exists(file));
            small.close();
            assertTrue(!java.nio.file.Files.exists(file), "the spill file is deleted at close");
        }
    }

    @Test
    void misuseIsAClearError() {
        try (Session s = engine.newSession(32)) {
            assertThrows(IllegalArgumentException.class, () -> s.append(vocab));
            assertThrows(IllegalArgumentException.class, () -> s.rollback(1));
            assertEquals(0, s.length());
            s.append(1, 2, 3);
            var e = assertThrows(dev.lockstep.memory.LockstepException.class, () -> s.append(new int[40]));
            assertTrue(e.getMessage().contains("capacity of 32"), e.getMessage());
            assertEquals(3, s.length());
        }
    }

    /**
     * 10,000 random operations over many sessions sharing a small pool: every logits the sessions return equal a
     * fresh single-sequence recompute of their context, a refused call changes nothing, and once every session is
     * closed and the prefix cache cleared the pool is back to all free.
     */
    @org.junit.jupiter.params.ParameterizedTest(name = "DISK tier: {0}")
    @org.junit.jupiter.params.provider.ValueSource(booleans = {false, true})
    void randomOperationsMatchAFreshRecomputeAndLeakNothing(boolean diskTier) {
        long pageBytes = engine.model().kvPageBytes();
        int operations = Integer.getInteger("lockstep.sessionOps", 10_000);
        EngineOptions options = new EngineOptions(2).withKvCacheBytes(12 * pageBytes).withKvDiskBytes(diskTier ? 8 * pageBytes : 0);
        try (Engine small = Engine.load(Golden.bundledModel(), options)) {
            int[] system = tokens(99, 37); // a shared "system prompt": many sessions start with it
            SplittableRandom r = new SplittableRandom(42);
            List<Session> live = new ArrayList<>();
            java.util.Map<String, float[]> recomputed = new java.util.HashMap<>();
            int checks = 0, refused = 0;
            for (int op = 0; op < operations; op++) {
                int kind = r.nextInt(10);
                if (live.isEmpty() || kind == 0 && live.size() < 12) {
                    live.add(small.newSession(96));
                    continue;
                }
                Session s = live.get(r.nextInt(live.size()));
                try {
                    switch (kind) {
                        case 1, 2, 3, 4 -> { // append a few tokens (small vocabulary range: prefixes repeat)
                            int[] more = new int[1 + r.nextInt(kind == 1 ? 20 : 4)];
                            for (int i = 0; i < more.length; i++) {
                                more[i] = r.nextInt(6);
                            }
                            if (s.length() == 0 && r.nextBoolean()) {
                                more = concat(system, more);
                            }
                            if (s.length() + more.length > s.capacity()) {
                                s.rollback(s.length());
                            }
                            float[] got = s.append(more).clone();
                            assertArrayEquals(recompute(small, s.tokens(), recomputed), got, "op " + op);
                            checks++;
                        }
                        case 5 -> {
                            if (s.length() > 0 && s.length() + 3 <= s.capacity()) {
                                s.generate(new int[0], 3, SamplingParams.GREEDY, StopCondition.IGNORE_EOS, (id, t) -> { });
                                assertArrayEquals(recompute(small, s.tokens(), recomputed), s.append().clone(), "op " + op + " after generate");
                                checks++;
                            }
                        }
                        case 6 -> live.add(s.fork());
                        case 7 -> s.rollback(r.nextInt(s.length() + 1));
                        default -> {
                            live.remove(s);
                            s.close();
                        }
                    }
                } catch (KvPoolExhaustedException e) {
                    refused++; // the pool is small on purpose; the session must be unchanged (checked at its next append)
                }
                if (live.size() > 16) {
                    live.remove(0).close();
                }
            }
            for (Session s : live) {
                s.close();
            }
            small.prefixCache().clear();
            assertEquals(0, small.kvPool().usedPages(), "every page back in the pool");
            if (diskTier) {
                assertEquals(0, small.kvDisk().usedSlots(), "every disk slot free");
                assertTrue(small.prefixCache().restoredPages() > 0, "pages came back from disk: " + small.prefixCache().restoredPages());
            }
            assertTrue(checks > operations / 3, checks + " checks");
            assertTrue(refused > 0 && small.prefixCache().hitPages() > 0 && small.kvPool().copies() > 0,
                    "the run exercised a full pool (" + refused + "), prefix hits (" + small.prefixCache().hitPages()
                            + ") and copy-on-write (" + small.kvPool().copies() + ")");
            System.out.printf("random operations, DISK tier %s: %d checks, %d refused, %d prefix hit pages, %d copies, %d spilled, %d restored%n",
                    diskTier, checks, refused, small.prefixCache().hitPages(), small.kvPool().copies(),
                    small.prefixCache().spilledPages(), small.prefixCache().restoredPages());
        }
    }

    /**
     * Four threads drive their own sessions at once on one small pool (so they batch, share prefix pages and run
     * the pool dry), handing forks to each other through a queue: every logits still equals a fresh recompute,
     * and every page comes back.
     */
    @Test
    void threadsDrivingSessionsAtOnceStayExactAndLeakNothing() throws Exception {
        long pageBytes = engine.model().kvPageBytes();
        int threads = 4, ops = Integer.getInteger("lockstep.concurrentSessionOps", 1000);
        try (Engine small = Engine.load(Golden.bundledModel(), new EngineOptions(2).withKvCacheBytes(20 * pageBytes));
             ExecutorService pool = Executors.newFixedThreadPool(threads)) {
            int[] system = tokens(98, 35);
            java.util.concurrent.LinkedBlockingQueue<Session> handoff = new java.util.concurrent.LinkedBlockingQueue<>();
            java.util.Map<String, float[]> recomputed = new java.util.concurrent.ConcurrentHashMap<>();
            java.util.concurrent.atomic.AtomicInteger checks = new java.util.concurrent.atomic.AtomicInteger();
            List<Future<?>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                long seed = t;
                futures.add(pool.submit(() -> {
                    SplittableRandom r = new SplittableRandom(seed);
                    List<Session> mine = new ArrayList<>();
                    try {
                        for (int op = 0; op < ops; op++) {
                            Session given = handoff.poll();
                            if (given != null) {
                                mine.add(given);
                            }
                            if (mine.size() > 6) { // forks handed over must not pile up: the pool is for work
                                mine.remove(0).close();
                            }
                            if (mine.isEmpty() || r.nextInt(8) == 0 && mine.size() < 4) {
                                mine.add(small.newSession(96));
                                continue;
                            }
                            Session s = mine.get(r.nextInt(mine.size()));
                            try {
                                switch (r.nextInt(6)) {
                                    case 0, 1, 2 -> {
                                        int[] more = new int[1 + r.nextInt(6)];
                                        for (int k = 0; k < more.length; k++) {
                                            more[k] = r.nextInt(5);
                                        }
                                        if (s.length() == 0 && r.nextBoolean()) {
                                            more = concat(system, more);
                                        }
                                        if (s.length() + more.length > s.capacity()) {
                                            s.rollback(s.length());
                                        }
                                        float[] got = s.append(more).clone();
                                        assertArrayEquals(recompute(small, s.tokens(), recomputed), got);
                                        checks.incrementAndGet();
                                    }
                                    case 3 -> handoff.add(s.fork()); // another thread takes it over
                                    case 4 -> s.rollback(r.nextInt(s.length() + 1));
                                    default -> {
                                        mine.remove(s);
                                        s.close();
                                    }
                                }
                            } catch (KvPoolExhaustedException full) {
                                // a small pool on purpose; the session is unchanged (checked at its next append)
                            }
                        }
                    } finally {
                        mine.forEach(Session::close);
                    }
                    return null;
                }));
            }
            for (Future<?> f : futures) {
                f.get();
            }
            for (Session s; (s = handoff.poll()) != null; ) {
                s.close();
            }
            small.prefixCache().clear();
            assertEquals(0, small.kvPool().usedPages(), "every page back in the pool");
            System.out.println("threads driving sessions: " + checks.get() + " checks");
            assertTrue(checks.get() > threads * ops / 4, checks.get() + " checks");
        }
    }

    private static float[] recompute(Engine e, int[] context, java.util.Map<String, float[]> memo) {
        return memo.computeIfAbsent(Arrays.toString(context), k -> {
            float[] all = DecodeConsistencyTest.logitsInBlocks(e.model(), context, context.length);
            return Arrays.copyOfRange(all, (context.length - 1) * vocab, context.length * vocab);
        });
    }
}
