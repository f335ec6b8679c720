package dev.lockstep.engine;

import dev.lockstep.memory.LockstepException;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.kv.KvCache;

import java.util.concurrent.atomic.AtomicReference;

/**
 * One sequence: its KV cache, scratch and the logits of its last position. Prefill feeds a block of
 * tokens at once; decode feeds one.
 *
 * <p>One thread at a time: every call claims the session for its duration, and a call from a second thread
 * while the first is inside fails at once with {@link IllegalStateException} (the sequence is untouched).
 * Handing a session from one thread to another between calls is fine. A forward that fails (a bad token id,
 * non-finite values, a full cache) leaves the session at its last good position. {@link #close()} frees the
 * cache; a second close does nothing; any other call after it fails.
 */
public final class Session implements AutoCloseable {
    private final Engine engine;
    private final CausalLm model;
    private final KvCache cache;
    private final ForwardState state;
    private final float[] logits;
    private final int[] one = new int[1];
    /** The thread inside a call, or null when idle. */
    private final AtomicReference<Thread> owner = new AtomicReference<>();
    private volatile boolean closed;

    Session(Engine engine, KvCache cache) {
        this.engine = engine;
        this.model = engine.model();
        this.cache = cache;
        this.state = model.newState(1);
        this.logits = new float[model.vocabSize()];
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

    /** Positions held so far. */
    public int position() {
        return cache.length();
    }

    public int capacity() {
        return cache.capacityTokens();
    }

    /** Runs {@code tokens} as one block; returns the last token's logits (a view, valid until the next call). */
    public float[] prefill(int[] tokens) {
        enter();
        try {
            return prefillOwned(tokens);
        } finally {
            exit();
        }
    }

    private float[] prefillOwned(int[] tokens) {
        if (tokens.length == 0) {
            throw new LockstepException("prompt is empty: at least one token is needed");
        }
        model.forward(tokens, 0, tokens.length, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
        return logits;
    }

    /** Runs one token; returns its logits (a view, valid until the next call). */
    public float[] decode(int token) {
        enter();
        try {
            return decodeOwned(token);
        } finally {
            exit();
        }
    }

    private float[] decodeOwned(int token) {
        one[0] = token;
        model.forward(one, 0, 1, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
        return logits;
    }

    /** Forgets everything after the first {@code length} positions (rollback). */
    public void rollback(int length) {
        enter();
        try {
            cache.truncate(length);
        } finally {
            exit();
        }
    }

    /**
     * Prefills {@code prompt}, then samples up to {@code maxNewTokens} tokens, streaming each to {@code sink}.
     */
    public GenerationStats generate(int[] prompt, int maxNewTokens, SamplingParams params, StopCondition stop, TokenSink sink) {
        enter();
        try {
            return generateOwned(prompt, maxNewTokens, params, stop, sink);
        } finally {
            exit();
        }
    }

    private GenerationStats generateOwned(int[] prompt, int maxNewTokens, SamplingParams params, StopCondition stop, TokenSink sink) {
        if (maxNewTokens < 0) {
            throw new IllegalArgumentException("number of tokens to generate must be >= 0, got " + maxNewTokens);
        }
        // The last sampled token is never fed back, so prompt + maxNewTokens - 1 positions are needed.
        long needed = (long) position() + prompt.length + Math.max(0, maxNewTokens - 1);
        if (needed > capacity()) {
            throw new LockstepException("prompt (" + prompt.length + " tokens) + " + maxNewTokens + " new tokens need "
                    + needed + " positions; this session holds " + capacity());
        }
        Sampler sampler = new Sampler(params);
        StreamingDecoder text = engine.tokenizer().streamingDecoder();
        int vocab = model.vocabSize();
        int eos = stop == StopCondition.EOS ? engine.eosTokenId().orElse(-1) : -1;

        long t0 = System.nanoTime();
        prefillOwned(prompt);
        long prefillNanos = System.nanoTime() - t0;

        int generated = 0, decodeSteps = 0;
        long decodeNanos = 0;
        boolean stoppedAtEos = false;
        if (maxNewTokens > 0) {
            int next = sampler.sample(logits, 0, vocab);
            while (true) {
                if (next == eos) {
                    stoppedAtEos = true;
                    break;
                }
                generated++;
                sink.accept(next, text.push(next));
                if (generated == maxNewTokens) {
                    break;
                }
                long s = System.nanoTime();
                decodeOwned(next);
                decodeNanos += System.nanoTime() - s;
                decodeSteps++;
                next = sampler.sample(logits, 0, vocab);
            }
            String rest = text.flush();
            if (!rest.isEmpty()) {
                sink.accept(-1, rest);
            }
        }
        return new GenerationStats(prompt.length, generated, decodeSteps, prefillNanos, decodeNanos, stoppedAtEos);
    }

    /** Frees the KV cache. Fails if another thread is inside a call; a second close does nothing. */
    @Override
    public void close() {
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
