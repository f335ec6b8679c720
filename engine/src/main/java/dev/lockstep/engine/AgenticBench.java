package dev.lockstep.engine;

import org.HdrHistogram.Histogram;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/**
 * The agentic workload: {@code sessions} root agents run concurrently, each on its own thread, all starting
 * from the same {@code systemTokens}-token system prompt. Every turn a root appends a {@code toolTokens}-token
 * tool result to its conversation and makes one model call that generates {@code genTokens} tokens; then it
 * forks {@code fanout} subagents from that call's session, each of which appends a tool result of its own,
 * generates, and closes; the root waits for them (dependent calls) and goes on to its next turn.
 *
 * <p>Root calls are stateless, as an OpenAI-compatible server sees them: each is a new session given the whole
 * conversation so far, so only the prefix cache saves recomputing it. Subagents share their parent's pages by
 * {@link Session#fork()}, with or without the prefix cache. Token ids come from a seeded generator; sampling
 * is greedy with end-of-sequence ignored, so every run does the same work.
 *
 * <p>Measured: time to first token of each call (from the call to the first streamed token, per turn, roots
 * and subagents apart), the interval between consecutive tokens of a call (per-token decode latency, as a
 * client sees it), aggregate generated tokens per second of wall time, the share of prompt tokens taken from
 * the prefix cache, and the most KV pages held at once.
 */
public final class AgenticBench {
    /** The shape of the workload. */
    public record Workload(int sessions, int systemTokens, int turns, int toolTokens, int genTokens, int fanout, long seed) {
        public Workload {
            if (sessions < 1 || systemTokens < 1 || turns < 1 || toolTokens < 1 || genTokens < 1 || fanout < 0) {
                throw new IllegalArgumentException("need sessions, system tokens, turns, tool tokens, gen tokens >= 1 and fanout >= 0");
            }
        }

        /** Positions the longest call needs: the system prompt and every turn's tool result and reply. */
        public int maxContext() {
            return systemTokens + turns * (toolTokens + genTokens) + toolTokens + genTokens;
        }

        public Workload withSessions(int n) {
            return new Workload(n, systemTokens, turns, toolTokens, genTokens, fanout, seed);
        }
    }

    /** What one run measured (latencies in nanoseconds). */
    public record Report(Workload workload, boolean prefixCache, Histogram[] rootTtftByTurn, Histogram[] subagentTtftByTurn,
                         Histogram interToken, long wallNanos, long generatedTokens, long promptTokens, long cachedPromptTokens,
                         int peakPages, long pageBytes, long steps, Histogram stepNanos, Histogram stepTokens,
                         StepCostFit stepCosts) {
        public double tokensPerSecond() {
            return generatedTokens * 1e9 / wallNanos;
        }

        public double prefixHitRate() {
            return promptTokens == 0 ? 0 : (double) cachedPromptTokens / promptTokens;
        }

        /** TTFT of every call of every turn together. */
        public Histogram allTtft() {
            Histogram all = newHistogram();
            for (Histogram h : rootTtftByTurn) {
                all.add(h);
            }
            for (Histogram h : subagentTtftByTurn) {
                all.add(h);
            }
            return all;
        }
    }

    private AgenticBench() {
    }

    static Histogram newHistogram() {
        return new Histogram(TimeUnit.SECONDS.toNanos(600), 3);
    }

    /** Runs {@code w} on {@code engine} (whose prefix cache, if any, should be empty) and reports what it measured. */
    public static Report run(Engine engine, Workload w) {
        SplittableRandom seeds = new SplittableRandom(w.seed());
        int vocab = engine.model().vocabSize();
        int[] system = Bench.randomTokens(vocab, w.systemTokens(), seeds.nextLong());
        Histogram[] rootTtft = new Histogram[w.turns()], subTtft = new Histogram[w.turns()];
        for (int t = 0; t < w.turns(); t++) {
            rootTtft[t] = newHistogram();
            subTtft[t] = newHistogram();
        }
        Histogram interToken = newHistogram();
        long[] generated = new long[1], prompt = new long[1];
        long hits0 = engine.prefixCache() == null ? 0 : engine.prefixCache().hitPages();
        long steps0 = engine.schedulerSteps();
        Histogram[] steps0Histograms = engine.stepHistograms();
        StepCostFit fit = new StepCostFit();
        engine.stepListener(fit);
        List<Thread> roots = new ArrayList<>();
        List<Throwable> failures = java.util.Collections.synchronizedList(new ArrayList<>());
        long start = System.nanoTime();
        for (int r = 0; r < w.sessions(); r++) {
            long rootSeed = seeds.nextLong();
            roots.add(Thread.ofPlatform().name("agent-" + r).start(() -> {
                try {
                    runRoot(engine, w, system, rootSeed, rootTtft, subTtft, interToken, generated, prompt);
                } catch (Throwable e) {
                    failures.add(e);
                }
            }));
        }
        join(roots);
        long wall = System.nanoTime() - start;
        engine.stepListener(null);
        if (!failures.isEmpty()) {
            RuntimeException e = new IllegalStateException("agentic benchmark: " + failures.size() + " agents failed; first: " + failures.getFirst(),
                    failures.getFirst());
            throw e;
        }
        long hits = engine.prefixCache() == null ? 0 : engine.prefixCache().hitPages() - hits0;
        return new Report(w, engine.prefixCache() != null, rootTtft, subTtft, interToken, wall, generated[0], prompt[0],
                hits * dev.lockstep.memory.KvBlockDescriptor.BLOCK_TOKENS, engine.kvPool().peakUsedPages(),
                engine.kvPool().pageBytes(), engine.schedulerSteps() - steps0, minus(engine.stepHistograms()[0], steps0Histograms[0]),
                minus(engine.stepHistograms()[1], steps0Histograms[1]), fit);
    }

    /**
     * Aggregate decode throughput: {@code sessions} sessions, each holding a {@code contextTokens}-token prompt
     * (prefilled before timing), generate {@code genTokens} tokens each, all at once (one thread per session,
     * started together); tokens per second of wall time from the start to the last token. With one session
     * this is plain decode speed; with more, the scheduler batches their decode steps.
     */
    public static double decodeTokensPerSecond(Engine engine, int sessions, int contextTokens, int genTokens, long seed) {
        int vocab = engine.model().vocabSize();
        List<Session> open = new ArrayList<>();
        try {
            for (int i = 0; i < sessions; i++) {
                Session s = engine.newSession(contextTokens + genTokens + 1);
                open.add(s);
                s.append(Bench.randomTokens(vocab, contextTokens, seed + i));
            }
            java.util.concurrent.CountDownLatch start = new java.util.concurrent.CountDownLatch(1);
            List<Thread> threads = new ArrayList<>();
            List<Throwable> failures = java.util.Collections.synchronizedList(new ArrayList<>());
            for (Session s : open) {
                threads.add(Thread.ofPlatform().start(() -> {
                    try {
                        start.await();
                        s.generate(new int[0], genTokens, SamplingParams.GREEDY, StopCondition.IGNORE_EOS, (id, text) -> { });
                    } catch (Throwable e) {
                        failures.add(e);
                    }
                }));
            }
            long t0 = System.nanoTime();
            start.countDown();
            join(threads);
            long wall = System.nanoTime() - t0;
            if (!failures.isEmpty()) {
                throw new IllegalStateException("decode run failed: " + failures.getFirst(), failures.getFirst());
            }
            return (double) sessions * genTokens * 1e9 / wall;
        } finally {
            open.forEach(Session::close);
        }
    }

    private static void runRoot(Engine engine, Workload w, int[] system, long seed, Histogram[] rootTtft, Histogram[] subTtft,
                                Histogram interToken, long[] generated, long[] prompt) {
        SplittableRandom random = new SplittableRandom(seed);
        int vocab = engine.model().vocabSize();
        int[] conversation = system.clone();
        for (int turn = 0; turn < w.turns(); turn++) {
            conversation = concat(conversation, Bench.randomTokens(vocab, w.toolTokens(), random.nextLong()));
            Call root = new Call();
            try (Session s = engine.newSession(w.maxContext())) {
                root.run(s, conversation, w.genTokens());
                conversation = s.tokens(); // the reply joins the conversation
                List<Thread> subagents = new ArrayList<>();
                List<Call> subCalls = new ArrayList<>();
                List<Throwable> failures = java.util.Collections.synchronizedList(new ArrayList<>());
                for (int f = 0; f < w.fanout(); f++) {
                    Session child = s.fork();
                    int[] task = Bench.randomTokens(vocab, w.toolTokens(), random.nextLong());
                    Call call = new Call();
                    subCalls.add(call);
                    subagents.add(Thread.ofPlatform().start(() -> {
                        try (child) {
                            call.run(child, task, w.genTokens());
                        } catch (Throwable e) {
                            failures.add(e);
                        }
                    }));
                }
                join(subagents);
                if (!failures.isEmpty()) {
                    throw new IllegalStateException("subagent failed: " + failures.getFirst(), failures.getFirst());
                }
                synchronized (generated) {
                    root.record(rootTtft[turn], interToken, generated, prompt);
                    for (Call c : subCalls) {
                        c.record(subTtft[turn], interToken, generated, prompt);
                    }
                }
            }
        }
    }

    /** One model call: its time to first token and the intervals between its tokens. */
    private static final class Call {
        long ttft;
        long[] intervals;
        int tokens;
        int promptTokens;

        void run(Session s, int[] prompt, int genTokens) {
            promptTokens = prompt.length;
            intervals = new long[genTokens];
            long[] last = {System.nanoTime()};
            long start = last[0];
            s.generate(prompt, genTokens, SamplingParams.GREEDY, StopCondition.IGNORE_EOS, (id, text) -> {
                if (id < 0) {
                    return;
                }
                long now = System.nanoTime();
                if (tokens == 0) {
                    ttft = now - start;
                } else {
                    intervals[tokens - 1] = now - last[0];
                }
                last[0] = now;
                tokens++;
            });
        }

        void record(Histogram ttftHistogram, Histogram interToken, long[] generated, long[] prompt) {
            ttftHistogram.recordValue(ttft);
            for (int i = 0; i < tokens - 1; i++) {
                interToken.recordValue(intervals[i]);
            }
            generated[0] += tokens;
            prompt[0] += promptTokens;
        }
    }

    private static Histogram minus(Histogram after, Histogram before) {
        Histogram h = after.copy();
        h.subtract(before);
        return h;
    }

    private static void join(List<Thread> threads) {
        boolean interrupted = false;
        for (Thread t : threads) {
            while (t.isAlive()) {
                try {
                    t.join();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    static int[] concat(int[] a, int[] b) {
        int[] c = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }
}
