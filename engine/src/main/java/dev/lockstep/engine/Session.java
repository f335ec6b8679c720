package dev.lockstep.engine;

import dev.lockstep.memory.LockstepException;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.kv.KvCache;

/**
 * One sequence: its KV cache, scratch and the logits of its last position. Prefill feeds a block of
 * tokens at once; decode feeds one. Not thread-safe.
 */
public final class Session implements AutoCloseable {
    private final Engine engine;
    private final CausalLm model;
    private final KvCache cache;
    private final ForwardState state;
    private final float[] logits;
    private final int[] one = new int[1];

    Session(Engine engine, KvCache cache) {
        this.engine = engine;
        this.model = engine.model();
        this.cache = cache;
        this.state = model.newState(1);
        this.logits = new float[model.vocabSize()];
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
        if (tokens.length == 0) {
            throw new LockstepException("prompt is empty: at least one token is needed");
        }
        model.forward(tokens, 0, tokens.length, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
        return logits;
    }

    /** Runs one token; returns its logits (a view, valid until the next call). */
    public float[] decode(int token) {
        one[0] = token;
        model.forward(one, 0, 1, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
        return logits;
    }

    /** Forgets everything after the first {@code length} positions (rollback). */
    public void rollback(int length) {
        cache.truncate(length);
    }

    /**
     * Prefills {@code prompt}, then samples up to {@code maxNewTokens} tokens, streaming each to {@code sink}.
     */
    public GenerationStats generate(int[] prompt, int maxNewTokens, SamplingParams params, StopCondition stop, TokenSink sink) {
        if (maxNewTokens < 0) {
            throw new IllegalArgumentException("number of tokens to generate must be >= 0, got " + maxNewTokens);
        }
        if ((long) position() + prompt.length + maxNewTokens > capacity() + 1L) {
            throw new LockstepException("prompt (" + prompt.length + " tokens) + " + maxNewTokens + " new tokens need "
                    + (prompt.length + maxNewTokens) + " positions; this session holds " + capacity());
        }
        Sampler sampler = new Sampler(params);
        StreamingDecoder text = engine.tokenizer().streamingDecoder();
        int vocab = model.vocabSize();
        int eos = stop == StopCondition.EOS ? engine.eosTokenId().orElse(-1) : -1;

        long t0 = System.nanoTime();
        prefill(prompt);
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
                decode(next);
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

    @Override
    public void close() {
        cache.close();
    }
}
