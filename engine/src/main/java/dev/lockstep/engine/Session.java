package dev.lockstep.engine;

import dev.lockstep.memory.KvBlockDescriptor;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.moe.ForwardBatch;
import dev.lockstep.moe.kv.PagedKvCache;
import dev.lockstep.moe.kv.PrefixCache;

import java.util.Arrays;
import java.util.concurrent.atomic.AtomicReference;

/**
 * One sequence: its tokens, the KV pages holding them (a page table into the engine's pool), and the logits of
 * its last position. {@link #append} adds tokens, {@link #generate} samples more, {@link #fork} makes a child
 * sharing every page (copy-on-write), {@link #rollback} forgets the last tokens, {@link #close} gives the pages
 * back. Work runs on the engine's scheduler, batched with every other session's ({@link Scheduler}); a
 * session's logits are bit-identical whether it runs alone or with others, its prefix computed fresh, forked
 * or taken from the prefix cache.
 *
 * {@snippet :
 * try (Engine engine = Engine.load(Path.of("models/kjv-qwen3moe"), EngineOptions.defaults());
 *      Session agent = engine.newSession()) {
 *     agent.append(engine.tokenizer().encode("And God said, Let there be light"));   // full pages join the prefix cache
 *     try (Session sub = agent.fork()) {              // shares every page; copies one only when it writes into it
 *         sub.generate(engine.tokenizer().encode(": and"), 16, SamplingParams.GREEDY, StopCondition.EOS,
 *                 (id, text) -> System.out.print(text));
 *     }
 *     agent.rollback(2);                              // forget the last two tokens (and their KV positions)
 *     float[] logits = agent.append(engine.tokenizer().encode(" light"));
 * }
 * }
 *
 * <p>Sampling state is the session's: successive {@code generate} calls with the same {@link SamplingParams}
 * continue one random stream (new parameters start a new one), and a fork continues from the parent's point.
 *
 * <p>A session's context holds every token it was given or generated. The last generated token is not fed to
 * the model until the next call needs it, so after {@code generate} the KV cache holds one position fewer
 * than {@link #length()}.
 *
 * <p>Threads: many threads may drive many sessions of one engine at once. One session serves one thread at a
 * time: a call from a second thread while the first is inside fails at once with {@link IllegalStateException}
 * (the sequence is untouched); handing a session to another thread between calls is fine. A call that fails
 * (a bad token id, non-finite values, a full context or KV pool) leaves the session at its last good state.
 * {@link #close()} gives its pages back; a second close does nothing; any other call after it fails.
 */
public final class Session implements AutoCloseable {
    /** The generation holding this session (its end not read yet), or null. */
    private volatile Generation active;
    private static final int[] NO_EOS = new int[0];

    private final Engine engine;
    private final PagedKvCache cache;
    private final PrefixCache prefixCache; // null when the engine runs without one
    private final float[] logits;
    /** The context: tokens [0, length); the cache holds a prefix of them. */
    private int[] tokens;
    private int length;
    /** Prefix-cache keys of full pages [0, keyedBlocks): key of page b names tokens [0, 16(b+1)). */
    private long[] pageKeys;
    private int keyedBlocks;
    /** The sampling state: kept across calls with the same parameters (the random stream goes on), copied by fork. */
    private Sampler sampler;
    /** The thread inside a call, or null when idle. */
    private final AtomicReference<Thread> owner = new AtomicReference<>();
    private volatile boolean closed;

    Session(Engine engine, PagedKvCache cache, PrefixCache prefixCache) {
        this(engine, cache, prefixCache, new int[64], 0, new long[4], 0);
    }

    private Session(Engine engine, PagedKvCache cache, PrefixCache prefixCache, int[] tokens, int length, long[] pageKeys,
                    int keyedBlocks) {
        this.engine = engine;
        this.cache = cache;
        this.prefixCache = prefixCache;
        this.logits = new float[engine.model().vocabSize()];
        this.tokens = tokens;
        this.length = length;
        this.pageKeys = pageKeys;
        this.keyedBlocks = keyedBlocks;
    }

    private void enter() {
        Thread me = Thread.currentThread();
        Thread other = owner.compareAndExchange(null, me);
        if (other != null) {
            throw new IllegalStateException(other == me
                    ? "session re-entered from its own token callback"
                    : "session is in use by thread '" + other.getName() + "'; a Session serves one thread at a time");
        }
        try {
            if (closed) {
                throw new IllegalStateException("session is closed");
            }
            engine.checkOpen();
        } catch (RuntimeException e) {
            owner.set(null);
            throw e;
        }
    }

    private void exit() {
        owner.set(null);
    }

    /** Tokens in the context (given and generated). */
    public int length() {
        return length;
    }

    /** Most tokens the context may hold. */
    public int capacity() {
        return cache.capacityTokens();
    }

    /** A copy of the context's tokens. */
    public int[] tokens() {
        enter();
        try {
            return Arrays.copyOf(tokens, length);
        } finally {
            exit();
        }
    }

    /** Pages of the engine's KV pool this session maps (some may be shared with others). */
    public int pages() {
        return cache.mappedBlocks();
    }

    /**
     * Adds {@code newTokens} to the context and runs them (with a token still unfed from {@link #generate});
     * returns the logits of the last position (a view, valid until the next call).
     */
    public float[] append(int... newTokens) {
        enter();
        try {
            if (newTokens.length == 0 && length == 0) {
                throw new LockstepException("prompt is empty: at least one token is needed");
            }
            int before = length;
            addTokens(newTokens);
            try {
                run(new Scheduler.Request(this, null, 0, NO_EOS));
            } catch (RuntimeException | Error e) {
                truncateTo(before);
                throw e;
            }
            return logits;
        } finally {
            exit();
        }
    }

    /**
     * Appends {@code prompt} (may be empty to continue the context), then samples up to {@code maxNewTokens}
     * tokens, streaming each to {@code sink} on this thread. If the sink throws, generation stops and the
     * exception propagates; the tokens streamed so far stay in the context.
     */
    public GenerationStats generate(int[] prompt, int maxNewTokens, SamplingParams params, StopCondition stop, TokenSink sink) {
        enter();
        try {
            if (maxNewTokens < 0) {
                throw new IllegalArgumentException("number of tokens to generate must be >= 0, got " + maxNewTokens);
            }
            if (prompt.length == 0 && length == 0) {
                throw new LockstepException("prompt is empty: at least one token is needed");
            }
            // The last sampled token is not fed, so context + prompt + maxNewTokens - 1 positions are needed.
            long needed = (long) length + prompt.length + Math.max(0, maxNewTokens - 1);
            if (needed > capacity()) {
                throw new LockstepException("context (" + length + " tokens) + prompt (" + prompt.length + " tokens) + " + maxNewTokens
                        + " new tokens need " + needed + " positions; this session holds " + capacity());
            }
            int before = length;
            addTokens(prompt);
            int[] eos = stop == StopCondition.EOS ? engine.specialTokens().eos() : NO_EOS;
            if (sampler == null || !sampler.params().equals(params)) {
                sampler = new Sampler(params);
            }
            Scheduler.Request r = new Scheduler.Request(this, sampler, maxNewTokens, eos);
            StreamingDecoder text = engine.tokenizer().streamingDecoder();
            long t0 = System.nanoTime();
            try {
                engine.scheduler().submit(r);
            } catch (RuntimeException e) {
                truncateTo(before);
                throw e;
            }
            try {
                for (int id; (id = r.next()) >= 0; ) {
                    engine.checkOpen(); // nothing is delivered once the engine is closed
                    sink.accept(id, text.push(id));
                }
            } catch (RuntimeException | Error e) {
                r.cancelAndAwait();
                throw e;
            }
            try {
                r.rethrow();
            } catch (RuntimeException | Error e) {
                if (!r.sawLogits) {
                    truncateTo(before); // the prompt never ran through: the session is as it was
                }
                throw e;
            }
            if (r.cancelled) {
                throw new LockstepException("generation interrupted after " + r.generated + " tokens (they stay in the context)");
            }
            String rest = text.flush();
            if (!rest.isEmpty()) {
                sink.accept(-1, rest);
            }
            long prefillEnd = r.sawLogits ? r.firstLogitsNanos : r.finishedNanos();
            return new GenerationStats(prompt.length, r.generated, r.decodeSteps, prefillEnd - t0,
                    r.finishedNanos() - prefillEnd, r.stoppedAtEos);
        } finally {
            exit();
        }
    }

    /**
     * Starts a generation and returns at once: the request's prompt is appended (empty continues the context), then up
     * to {@code maxTokens} tokens are sampled on the engine's scheduler, batched with every other session's work. The
     * returned {@link Generation} streams the tokens, can be cancelled from any thread, and reports why it ended. The
     * session is busy (other calls fail) until that end has been read; the generated tokens stay in the context
     * (tokens sampled after a stop string too: {@link #rollback} removes them).
     */
    public Generation submit(GenerateRequest g) {
        enter();
        boolean started = false;
        try {
            int[] prompt = g.prompt();
            if (prompt.length == 0 && length == 0) {
                throw new LockstepException("prompt is empty: at least one token is needed");
            }
            long needed = (long) length + prompt.length + Math.max(0, g.maxTokens() - 1);
            if (needed > capacity()) {
                throw new LockstepException("context (" + length + " tokens) + prompt (" + prompt.length + " tokens) + " + g.maxTokens()
                        + " new tokens need " + needed + " positions; this session holds " + capacity());
            }
            int before = length;
            addTokens(prompt);
            int[] eos = g.ignoreEos() ? g.stopTokenIds() : concat(engine.specialTokens().eos(), g.stopTokenIds());
            if (sampler == null || !sampler.params().equals(g.sampling())) {
                sampler = new Sampler(g.sampling());
            }
            Scheduler.Request r = new Scheduler.Request(this, sampler, g.maxTokens(), eos);
            r.adjust = g.adjust();
            r.logprobs = g.logprobs();
            Generation gen = new Generation(this, r, engine.tokenizer().streamingDecoder(), new StopStrings(g.stop()), prompt.length, before,
                    System.nanoTime());
            try {
                engine.scheduler().submit(r);
            } catch (RuntimeException e) {
                truncateTo(before);
                throw e;
            }
            started = true;
            active = gen;
            return gen;
        } finally {
            if (!started) {
                exit();
            }
        }
    }

    private static int[] concat(int[] a, int[] b) {
        int[] c = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    /** The context's tokens, {@link #length()} of them valid (the scheduler's view; not a copy). */
    int[] contextTokens() {
        return tokens;
    }

    /** Ends a {@link Generation}'s hold on this session. */
    void release() {
        active = null;
        exit();
    }

    /** A failed generation's rollback to the context before its prompt. */
    void rollbackTo(int before) {
        truncateTo(before);
    }

    /**
     * A new session with this one's context: it shares every KV page (the first of the two to write into a
     * shared page copies it), and closes independently.
     */
    public Session fork() {
        enter();
        try {
            PagedKvCache childCache = cache.fork();
            Session child = new Session(engine, childCache, prefixCache, Arrays.copyOf(tokens, Math.max(16, length)), length,
                    Arrays.copyOf(pageKeys, pageKeys.length), Math.min(keyedBlocks, childCache.length() / KvBlockDescriptor.BLOCK_TOKENS));
            child.sampler = sampler == null ? null : sampler.copy();
            return child;
        } finally {
            exit();
        }
    }

    /** Forgets the last {@code nTokens} tokens of the context (and their KV positions). */
    public void rollback(int nTokens) {
        enter();
        try {
            if (nTokens < 0 || nTokens > length) {
                throw new IllegalArgumentException("cannot roll back " + nTokens + " tokens of a " + length + "-token context");
            }
            truncateTo(length - nTokens);
        } finally {
            exit();
        }
    }

    private void truncateTo(int newLength) {
        length = newLength;
        if (cache.length() > newLength) {
            cache.truncate(newLength);
        } else {
            cache.truncate(cache.length()); // drop pages reserved past the end
        }
        keyedBlocks = Math.min(keyedBlocks, cache.length() / KvBlockDescriptor.BLOCK_TOKENS);
    }

    private void addTokens(int[] more) {
        int vocab = logits.length;
        for (int i = 0; i < more.length; i++) {
            if (more[i] < 0 || more[i] >= vocab) {
                throw new IllegalArgumentException("token id " + more[i] + " at index " + i + " is outside the vocabulary [0, " + vocab + ")");
            }
        }
        if ((long) length + more.length > capacity()) {
            throw new LockstepException("context (" + length + " tokens) + " + more.length + " tokens exceed this session's capacity of "
                    + capacity() + " positions");
        }
        if (length + more.length > tokens.length) {
            tokens = Arrays.copyOf(tokens, Math.max(length + more.length, 2 * tokens.length));
        }
        System.arraycopy(more, 0, tokens, length, more.length);
        length += more.length;
    }

    private void run(Scheduler.Request r) {
        engine.scheduler().submit(r);
        while (r.next() >= 0) {
            // an append emits no tokens
        }
        r.rethrow();
    }

    // ---- called by the scheduler thread while the session's caller waits on the request ----

    PagedKvCache cache() {
        return cache;
    }

    int unfedTokens() {
        return length - cache.length();
    }

    /** Before a request's first step: at least one token to feed (its logits are the request's start), then cached pages attached. */
    void startRequest(Scheduler.Request r) {
        if (length == 0) {
            throw new LockstepException("the context is empty: at least one token is needed");
        }
        if (cache.length() == length) {
            cache.truncate(length - 1); // logits of the last position are needed: recompute it
            keyedBlocks = Math.min(keyedBlocks, cache.length() / KvBlockDescriptor.BLOCK_TOKENS);
        }
        attachCachedPages();
        r.cachedTokens = cache.length();
    }

    /**
     * Calls {@code sink} with the prefix-cache key of every full page that feeding the next {@code n} unfed tokens
     * completes (nothing without a prefix cache).
     */
    void forEachPageCompletedBy(int n, java.util.function.LongConsumer sink) {
        if (prefixCache == null) {
            return;
        }
        int b = KvBlockDescriptor.BLOCK_TOKENS;
        long parent = keyedBlocks == 0 ? PrefixCache.ROOT : pageKeys[keyedBlocks - 1];
        for (int block = keyedBlocks; (block + 1) * b <= cache.length() + n; block++) {
            parent = PrefixCache.key(parent, tokens, block * b);
            sink.accept(parent);
        }
    }

    /**
     * The key of the next page of unfed tokens when the prefix cache could supply it (the cache ends on a page
     * boundary and a full page plus one token are unfed), else {@code 0}.
     */
    long nextCacheablePageKey() {
        int b = KvBlockDescriptor.BLOCK_TOKENS;
        if (prefixCache == null || cache.length() % b != 0 || keyedBlocks * b != cache.length() || cache.length() + b >= length) {
            return 0;
        }
        return PrefixCache.key(keyedBlocks == 0 ? PrefixCache.ROOT : pageKeys[keyedBlocks - 1], tokens, cache.length());
    }

    /** Takes full pages of the unfed tokens from the prefix cache, leaving at least one token to feed. */
    void attachCachedPages() {
        if (prefixCache == null) {
            return;
        }
        int b = KvBlockDescriptor.BLOCK_TOKENS;
        while (cache.length() % b == 0 && keyedBlocks * b == cache.length() && cache.length() + b < length) {
            long parent = keyedBlocks == 0 ? PrefixCache.ROOT : pageKeys[keyedBlocks - 1];
            int page = prefixCache.lookup(parent, tokens, cache.length());
            if (page < 0) {
                return;
            }
            long key = PrefixCache.key(parent, tokens, cache.length());
            cache.attach(page);
            setKey(keyedBlocks++, key);
        }
    }

    /** Offers the pages that became full to the prefix cache. */
    void registerFullPages() {
        if (prefixCache == null) {
            return;
        }
        int b = KvBlockDescriptor.BLOCK_TOKENS;
        while ((keyedBlocks + 1) * b <= cache.length()) {
            long parent = keyedBlocks == 0 ? PrefixCache.ROOT : pageKeys[keyedBlocks - 1];
            long key = prefixCache.insert(parent, tokens, keyedBlocks * b, cache.page(keyedBlocks));
            setKey(keyedBlocks++, key);
        }
    }

    private void setKey(int block, long key) {
        if (block == pageKeys.length) {
            pageKeys = Arrays.copyOf(pageKeys, 2 * block);
        }
        pageKeys[block] = key;
    }

    /** Adds the next {@code n} unfed tokens to {@code batch} as sequence {@code q}; logits for the last if it is the context's last. */
    void addTo(ForwardBatch batch, int q, int n, boolean last) {
        batch.add(q, tokens, cache.length(), n, last);
    }

    void keepLogits(float[] from, int off, int vocab) {
        System.arraycopy(from, off, logits, 0, vocab);
    }

    void appendGenerated(int token) {
        if (length == tokens.length) {
            tokens = Arrays.copyOf(tokens, 2 * length);
        }
        tokens[length++] = token;
    }

    /** Gives the KV pages back. Fails if another thread is inside a call; a second close does nothing. */
    @Override
    public void close() {
        Generation running = active;
        if (running != null) {
            // a generation whose end was not read: cancel it (it ends at the scheduler's next step) and read its end,
            // which frees the session; the generated tokens stay in the context that is being closed anyway
            running.cancel();
            running.await();
        }
        Thread me = Thread.currentThread();
        Thread other = owner.compareAndExchange(null, me);
        if (other != null) {
            throw new IllegalStateException("cannot close a session while thread '" + other.getName() + "' is using it");
        }
        try {
            if (!closed) {
                closed = true;
                cache.close();
            }
        } finally {
            owner.set(null);
        }
    }
}
