package dev.lockstep.engine;

import dev.lockstep.memory.LockstepException;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardBatch;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.NonFiniteException;

import java.util.ArrayList;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.locks.LockSupport;

/**
 * Continuous batching: one thread steps every active request of an engine together. Each step takes, in
 * admission order, one decode token from every request that is generating, then prefill chunks of the
 * requests still reading their input, until the step's token budget is spent; runs them as one
 * {@link ForwardBatch}; then samples each finished row with its request's own {@link Sampler}. New requests
 * join between steps; a request leaves when done, failed or cancelled.
 *
 * <p>Sessions never run forwards themselves: a session's call submits a {@link Request} and waits on it, and
 * its {@link TokenSink} runs on the session's thread (never here), so a slow consumer delays only itself.
 *
 * <p>Failure is per request: a full KV pool, a full context or non-finite values in one sequence fail that
 * request (its session keeps its last good state) and the step is run again without it; the others go on.
 * Since a token's result does not depend on its batch mates, rerunning a step gives the others the same bits.
 */
final class Scheduler implements AutoCloseable {
    private final CausalLm model;
    private final Runnable onStart; // runs first on the scheduler's thread (pinning it: it is worker 0 of every forward)
    private final int vocab;
    private final int batchTokens;
    private final ConcurrentLinkedQueue<Request> incoming = new ConcurrentLinkedQueue<>();
    private final ArrayList<Request> active = new ArrayList<>();
    private final ArrayList<Request> inBatch = new ArrayList<>();
    /** Prefix-cache keys of the pages the step being filled completes. */
    private final java.util.HashSet<Long> pendingPages = new java.util.HashSet<>();
    private final ForwardBatch batch;
    private final ForwardState state;
    private final Thread thread;
    private float[] logits;
    private volatile boolean stopping;
    private volatile Throwable fatal;
    private long steps;
    private int batchTokensOfLastStep;
    /** What the step being filled carries (see {@link StepListener}). */
    private int decodeTokens;
    private int prefillTokens;
    private long decodeContext;
    private long prefillAttend;
    private volatile StepListener listener;
    private final StepBudget stepBudget; // null: no per-token latency target
    /**
     * Wall time of each step (forward + sampling), nanoseconds, and its tokens; guarded by {@link #stepLock}.
     * Made on the scheduler's thread as it starts, off a cold start's critical path.
     */
    private final Object stepLock = new Object();
    private org.HdrHistogram.Histogram stepTimes;
    private org.HdrHistogram.Histogram stepTokens;

    Scheduler(CausalLm model, int batchTokens, Runnable onStart) {
        this(model, batchTokens, 0, onStart);
    }

    /** {@code tokenSloNanos} > 0 caps the prefill a step carrying decode tokens takes ({@link StepBudget}). */
    Scheduler(CausalLm model, int batchTokens, long tokenSloNanos, Runnable onStart) {
        this.stepBudget = tokenSloNanos > 0 ? new StepBudget(tokenSloNanos) : null;
        this.onStart = onStart;
        this.model = model;
        this.vocab = model.vocabSize();
        this.batchTokens = batchTokens;
        this.batch = new ForwardBatch(batchTokens);
        this.state = model.newState(Math.min(batchTokens, 64));
        this.logits = new float[8 * vocab];
        this.thread = Thread.ofPlatform().daemon().name("lockstep-scheduler").unstarted(this::loop);
        thread.start();
    }

    /** Queues {@code r}; it runs from the next step on. */
    void submit(Request r) {
        if (stopping) {
            throw stopped();
        }
        r.schedulerThread = thread;
        incoming.add(r);
        LockSupport.unpark(thread);
        if (stopping && incoming.remove(r)) { // raced with close: nobody will step it
            throw stopped();
        }
    }

    private IllegalStateException stopped() {
        Throwable f = fatal;
        return f == null ? new IllegalStateException("engine is closed")
                : new IllegalStateException("the engine's scheduler stopped after " + f, f);
    }

    /** Copies of the step-time (ns) and step-size (tokens) histograms since the engine started. */
    org.HdrHistogram.Histogram[] stepHistograms() {
        synchronized (stepLock) {
            if (stepTimes == null) {
                return new org.HdrHistogram.Histogram[]{new org.HdrHistogram.Histogram(60_000_000_000L, 3), new org.HdrHistogram.Histogram(1 << 20, 3)};
            }
            return new org.HdrHistogram.Histogram[]{stepTimes.copy(), stepTokens.copy()};
        }
    }

    long steps() {
        return steps;
    }

    /** The per-token latency target's report, or null without one. */
    StepBudget.Report stepBudget() {
        return stepBudget == null ? null : stepBudget.report();
    }

    void listener(StepListener l) {
        listener = l;
    }

    private void loop() {
        if (onStart != null) {
            onStart.run();
        }
        synchronized (stepLock) {
            stepTimes = new org.HdrHistogram.Histogram(60_000_000_000L, 3);
            stepTokens = new org.HdrHistogram.Histogram(1 << 20, 3);
        }
        while (!stopping) {
            for (Request r; (r = incoming.poll()) != null; ) {
                active.add(r);
            }
            if (active.isEmpty()) {
                LockSupport.park(this);
                continue;
            }
            try {
                if (!step()) {
                    // every active request waits for its consumer to read (MAX_UNREAD_TOKENS): a read, a cancel or a
                    // new request unparks this thread
                    LockSupport.park(this);
                }
            } catch (RuntimeException | Error e) { // a bug: fail everything rather than leave callers waiting
                fatal = e;
                stopping = true;
            }
        }
        RuntimeException closed = stopped();
        for (Request r; (r = incoming.poll()) != null; ) {
            active.add(r);
        }
        for (Request r : active) {
            r.finish(closed);
        }
        active.clear();
        batch.clear();
        inBatch.clear();
    }

    /**
     * One forward over every request that has work, retried without a request that fails on its own; false when no
     * request had any (all of them wait for their consumers).
     */
    private boolean step() {
        while (true) {
            fillBatch();
            if (batch.size() == 0) {
                return false;
            }
            int sequences = inBatch.size();
            long t0 = System.nanoTime();
            batchTokensOfLastStep = batch.size();
            try {
                ensureLogits(batch.logitsRows());
                model.forward(batch, state, logits, ForwardObserver.NONE);
            } catch (NonFiniteException e) {
                Request bad = inBatch.get(e.batchSequence());
                active.remove(bad);
                bad.finish(e);
                continue; // nothing was committed: run the step again without it
            } catch (RuntimeException | Error e) {
                for (Request r : inBatch) {
                    active.remove(r);
                    r.finish(e);
                }
                batch.clear();
                inBatch.clear();
                if (e instanceof Error && !(e instanceof OutOfMemoryError)) {
                    fatal = e; // a JVM-level failure: stop taking work rather than step on in an unknown state
                    stopping = true;
                }
                return true;
            }
            steps++;
            afterForward();
            long t1 = System.nanoTime();
            synchronized (stepLock) {
                stepTimes.recordValue(Math.min(t1 - t0, stepTimes.getHighestTrackableValue()));
                stepTokens.recordValue(Math.min(batchTokensOfLastStep, stepTokens.getHighestTrackableValue()));
            }
            if (stepBudget != null) {
                stepBudget.record(decodeTokens, decodeContext, prefillTokens, prefillAttend, sequences, t1 - t0);
            }
            StepListener l = listener;
            if (l != null) {
                try {
                    l.onStep(decodeTokens, decodeContext, prefillTokens, prefillAttend, sequences, t1 - t0);
                } catch (RuntimeException e) { // user code: it loses its seat, the sessions keep theirs
                    if (listener == l) {
                        listener = null;
                    }
                    System.err.println("lockstep: step listener removed after it threw " + e);
                }
            }
            return true;
        }
    }

    /** Decode tokens first (latency), then prefill chunks, in admission order, within the token budget. */
    private void fillBatch() {
        batch.clear();
        inBatch.clear();
        pendingPages.clear();
        int budget = batchTokens;
        decodeTokens = prefillTokens = 0;
        decodeContext = prefillAttend = 0;
        // Cancellations are taken once, before any request joins the batch: a request finished here lets its owner
        // close the session (and its KV cache), so it must not be one the step is about to run (a cancel that lands
        // between the decode and the prefill pass used to finish a request already in the batch: the step then read
        // a closed cache and failed every request in it).
        for (int i = 0; i < active.size(); ) {
            Request r = active.get(i);
            if (r.cancelled) {
                active.remove(i);
                r.finish(null);
            } else {
                i++;
            }
        }
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < active.size() && budget > 0; ) {
                Request r = active.get(i);
                i++;
                Session s = r.session;
                if (!r.started) {
                    r.started = true;
                    try {
                        s.startRequest(r);
                    } catch (RuntimeException e) {
                        active.remove(r);
                        i--;
                        r.finish(e);
                        continue;
                    }
                }
                boolean decode = r.sawLogits;
                if ((pass == 0) != decode) {
                    continue;
                }
                if (decode && r.backlogged()) {
                    continue; // its consumer is MAX_UNREAD_TOKENS behind: a slow reader holds back only its own session
                }
                if (!decode) {
                    // Pages another request computes this step (or just computed) are taken, not recomputed:
                    // sessions that start together from one system prompt compute it once.
                    s.attachCachedPages();
                    long next = s.nextCacheablePageKey();
                    if (next != 0 && pendingPages.contains(next)) {
                        continue; // wait a step: the page will be in the prefix cache
                    }
                }
                int unfed = s.unfedTokens();
                int n = Math.min(unfed, budget);
                if (!decode && stepBudget != null) {
                    n = stepBudget.prefillAllowance(decodeTokens, decodeContext, prefillTokens, prefillAttend, s.cache().length(), n);
                    if (n == 0) {
                        continue; // the step's time budget is spent: this prompt goes on next step
                    }
                }
                try {
                    s.cache().reserve(n);
                } catch (RuntimeException e) { // full pool or full context: this request only
                    active.remove(r);
                    i--;
                    r.finish(e);
                    continue;
                }
                long context = s.cache().length();
                if (decode) {
                    decodeTokens += n;
                    decodeContext += n * context;
                } else {
                    prefillTokens += n;
                    prefillAttend += n * context + (long) n * (n - 1) / 2;
                }
                int q = batch.addSequence(s.cache());
                s.addTo(batch, q, n, n == unfed);
                inBatch.add(r);
                budget -= n;
                if (!decode) {
                    s.forEachPageCompletedBy(n, pendingPages::add);
                }
            }
        }
    }

    private void ensureLogits(int rows) {
        if (logits.length < (long) rows * vocab) {
            logits = new float[Math.max(rows, 2 * logits.length / vocab) * vocab];
        }
    }

    private void afterForward() {
        long now = System.nanoTime();
        int row = 0;
        for (int q = 0; q < inBatch.size(); q++) {
            Request r = inBatch.get(q);
            Session s = r.session;
            try {
                s.registerFullPages();
            } catch (RuntimeException e) {
                active.remove(r);
                r.finish(e);
                if (row < batch.logitsRows() && batch.sequence(batch.logitsToken(row)) == q) {
                    row++;
                }
                continue;
            }
            boolean hasLogits = row < batch.logitsRows() && batch.sequence(batch.logitsToken(row)) == q;
            if (r.sawLogits) {
                r.decodeSteps++;
            }
            if (!hasLogits) {
                continue; // a prefill chunk that is not the last
            }
            int off = row++ * vocab;
            if (!r.sawLogits) {
                r.sawLogits = true;
                r.firstLogitsNanos = now;
            }
            RuntimeException failure = null;
            boolean done;
            try {
                done = r.onLogits(logits, off, vocab);
            } catch (RuntimeException e) {
                failure = e;
                done = true;
            }
            if (done) {
                active.remove(r);
                r.finish(failure);
            }
        }
        batch.clear();
        inBatch.clear();
    }

    /** Stops the thread after the step in flight; requests still queued or active fail with "engine is closed". */
    @Override
    public void close() {
        stopping = true;
        LockSupport.unpark(thread);
        boolean interrupted = false;
        while (thread.isAlive()) {
            try {
                thread.join();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * One call of a session: feed its unfed tokens, then either keep the last logits ({@link #sampler} null) or
     * sample up to {@code maxNewTokens}. Results cross threads under this object's monitor.
     */
    static final class Request {
        /**
         * Tokens a request may have generated that its consumer has not read yet; beyond that it sits out decode steps
         * until the consumer catches up (the event stream is bounded, and the scheduler never waits for a reader).
         */
        static final int MAX_UNREAD_TOKENS = 64;

        final Session session;
        /** The scheduler's thread, unparked when a read or a cancel may give it work again. */
        volatile Thread schedulerThread;
        final Sampler sampler;
        final int maxNewTokens;
        /** Ids that end the generation (the model's end-of-sequence set; empty to ignore it). */
        final int[] eos;
        final long submittedNanos = System.nanoTime();
        volatile boolean cancelled;
        // scheduler thread only
        boolean started;
        boolean sawLogits;
        long firstLogitsNanos;
        /** Context positions whose KV was already there when the request started (its session's, the prefix cache's). */
        int cachedTokens;
        int decodeSteps;
        int generated;
        // guarded by this
        private int[] emitted = new int[16];
        private long[] emittedNanos = new long[16]; // System.nanoTime() of each emitted token
        private int emittedCount;
        private int consumed;
        private boolean done;
        private RuntimeException failure;
        private Error error;
        private long finishedNanos;
        boolean stoppedAtEos;

        /** What the request changes in its logits before sampling, and its scratch (a copy of the row, counts per id). */
        LogitAdjustments adjust = LogitAdjustments.NONE;
        private float[] row;
        private int[] counts;
        /** Top alternatives reported per generated token (0: no log-probabilities), and what was reported (guarded by this). */
        int logprobs;
        private float[] emittedLogprob = new float[0];
        private int[] topIds = new int[0];
        private float[] topLogprobs = new float[0];
        private int[] bestIds = new int[0];
        private float[] bestValues = new float[0];

        Request(Session session, Sampler sampler, int maxNewTokens, int[] eos) {
            this.session = session;
            this.sampler = sampler;
            this.maxNewTokens = maxNewTokens;
            this.eos = eos;
        }

        /** Ends the request at the scheduler's next step; any thread. */
        void cancel() {
            cancelled = true;
            wakeScheduler();
        }

        private void wakeScheduler() {
            Thread t = schedulerThread;
            if (t != null) {
                LockSupport.unpark(t);
            }
        }

        /** Whether {@link #next()} would return at once (a token is waiting, or the request is done). */
        synchronized boolean ready() {
            return consumed < emittedCount || done;
        }

        synchronized boolean backlogged() {
            return emittedCount - consumed >= MAX_UNREAD_TOKENS;
        }

        private boolean isEos(int id) {
            for (int e : eos) {
                if (e == id) {
                    return true;
                }
            }
            return false;
        }

        /** Handles the logits of the last fed token; returns true when the request is complete. */
        boolean onLogits(float[] logits, int off, int vocab) {
            if (sampler == null || maxNewTokens == 0) {
                session.keepLogits(logits, off, vocab);
                return true;
            }
            int next;
            if (adjust.none()) {
                next = sampler.sample(logits, off, vocab);
            } else {
                if (row == null || row.length < vocab) {
                    row = new float[vocab];
                    counts = new int[vocab];
                }
                System.arraycopy(logits, off, row, 0, vocab);
                adjust.apply(row, vocab, session.contextTokens(), session.length(), sampler.params().temperature(), counts);
                next = sampler.sample(row, 0, vocab);
            }
            if (isEos(next)) {
                stoppedAtEos = true;
                return true;
            }
            session.appendGenerated(next);
            generated++;
            float lp = logprobs > 0 ? logprobs(logits, off, vocab, next) : Float.NaN;
            synchronized (this) {
                if (emittedCount == emitted.length) {
                    emitted = java.util.Arrays.copyOf(emitted, 2 * emittedCount);
                    emittedNanos = java.util.Arrays.copyOf(emittedNanos, 2 * emittedCount);
                }
                if (logprobs > 0) {
                    if (emittedLogprob.length < emitted.length) {
                        emittedLogprob = java.util.Arrays.copyOf(emittedLogprob, emitted.length);
                        topIds = java.util.Arrays.copyOf(topIds, emitted.length * logprobs);
                        topLogprobs = java.util.Arrays.copyOf(topLogprobs, emitted.length * logprobs);
                    }
                    emittedLogprob[emittedCount] = lp;
                    System.arraycopy(bestIds, 0, topIds, emittedCount * logprobs, logprobs);
                    System.arraycopy(bestValues, 0, topLogprobs, emittedCount * logprobs, logprobs);
                }
                emittedNanos[emittedCount] = System.nanoTime();
                emitted[emittedCount++] = next;
                notifyAll();
            }
            return generated == maxNewTokens;
        }

        /**
         * The log-probability of {@code chosen} under the model's own distribution (the raw logits' log-softmax, in
         * double: before temperature, penalties and cuts), with the {@code logprobs} most likely ids and theirs in
         * {@code bestIds}/{@code bestValues} (ties: lower id first).
         */
        private float logprobs(float[] logits, int off, int vocab, int chosen) {
            if (bestIds.length < logprobs) {
                bestIds = new int[logprobs];
                bestValues = new float[logprobs];
            }
            double lse = Perplexity.logSumExp(logits, off, vocab);
            int n = Math.min(logprobs, vocab), filled = 0;
            for (int i = 0; i < vocab; i++) {
                float v = logits[off + i];
                if (filled == n && v <= logits[off + bestIds[n - 1]]) {
                    continue;
                }
                int at = filled == n ? n - 1 : filled++;
                while (at > 0 && logits[off + bestIds[at - 1]] < v) {
                    bestIds[at] = bestIds[at - 1];
                    at--;
                }
                bestIds[at] = i;
            }
            for (int j = 0; j < n; j++) {
                bestValues[j] = (float) (logits[off + bestIds[j]] - lse);
            }
            return (float) (logits[off + chosen] - lse);
        }

        /** Log-probability of emitted token {@code i}, NaN when none were asked for. */
        /** When each of the first {@code n} emitted tokens was sampled, in {@link System#nanoTime()}. */
        synchronized long[] emittedNanos(int n) {
            return java.util.Arrays.copyOf(emittedNanos, Math.min(n, emittedCount));
        }

        synchronized float logprob(int i) {
            return logprobs > 0 ? emittedLogprob[i] : Float.NaN;
        }

        /** The top ids and log-probabilities reported with emitted token {@code i}. */
        synchronized java.util.List<Generation.TopLogprob> top(int i) {
            java.util.List<Generation.TopLogprob> out = new java.util.ArrayList<>(logprobs);
            for (int j = 0; j < logprobs; j++) {
                out.add(new Generation.TopLogprob(topIds[i * logprobs + j], topLogprobs[i * logprobs + j]));
            }
            return java.util.List.copyOf(out);
        }

        synchronized void finish(Throwable t) {
            if (done) {
                return;
            }
            if (t instanceof RuntimeException re) {
                failure = re;
            } else if (t instanceof Error e) {
                error = e;
            }
            finishedNanos = System.nanoTime();
            done = true;
            notifyAll();
        }

        /**
         * Waits for the next generated token; returns it, or -1 when the request is complete (then
         * {@link #rethrow()} reports a failure). Uninterruptible: an interrupt cancels the request, which
         * then completes at the next step.
         */
        synchronized int next() {
            boolean interrupted = false;
            try {
                while (consumed == emittedCount && !done) {
                    try {
                        wait();
                    } catch (InterruptedException e) {
                        interrupted = true;
                        cancel();
                    }
                }
                if (consumed == emittedCount) {
                    return -1;
                }
                int id = emitted[consumed++];
                if (emittedCount - consumed == MAX_UNREAD_TOKENS - 1) {
                    wakeScheduler(); // it may have been sitting out steps for this reader
                }
                return id;
            } finally {
                if (interrupted) {
                    Thread.currentThread().interrupt();
                }
            }
        }

        /** Cancels and waits until the scheduler has let go of the session. */
        synchronized void cancelAndAwait() {
            cancel();
            while (!done) {
                try {
                    wait();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    // keep waiting: the session must not be touched by two threads
                }
            }
        }

        synchronized void rethrow() {
            if (error != null) {
                throw error;
            }
            if (failure != null) {
                throw failure; // as raised on the scheduler thread (its stack trace shows where)
            }
        }

        synchronized long finishedNanos() {
            return finishedNanos;
        }
    }
}
