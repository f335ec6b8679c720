package dev.lockstep.moe;

import dev.lockstep.moe.kv.KvCache;

/**
 * A loaded causal language model. {@link #forward} runs a block of tokens at the positions following
 * what the cache already holds, appends their keys and values to the cache, and writes logits.
 * Prefill is one call with the whole prompt (matrix-matrix); decode is one call per token (matrix-vector).
 * Both compute every element with the same operation order, so they give bit-identical logits.
 *
 * <p>A model is immutable after loading and may serve several sessions, each with its own cache and
 * {@link ForwardState}; one forward runs at a time per model (it shares the model's worker pool).
 */
public interface CausalLm extends AutoCloseable {
    ModelSummary summary();

    /**
     * Weight bytes one decode token reads: every matrix it multiplies as packed (top-k experts of average size per
     * MoE layer, lm_head, one embedding row). With the machine's read bandwidth this gives the decode roofline.
     */
    long weightBytesPerToken();

    int vocabSize();

    /** Largest position the model was configured for ({@code max_position_embeddings}). */
    int maxPositions();

    /** A KV cache for up to {@code capacityTokens} positions of one sequence. */
    KvCache newKvCache(int capacityTokens);

    /** Scratch for forwards of up to {@code maxBatchTokens} tokens at once; grows when a larger block comes. */
    ForwardState newState(int maxBatchTokens);

    /**
     * Runs {@code tokens[off .. off+n)} at positions {@code cache.length() ..}, appends their K/V, and writes
     * logits into {@code logits}: for {@link LogitsMode#ALL} {@code n * vocab} floats (row t = position
     * {@code cache.length()+t} before the call), for {@link LogitsMode#LAST} the last token's {@code vocab} floats.
     */
    void forward(int[] tokens, int off, int n, KvCache cache, ForwardState state, float[] logits, LogitsMode mode,
                 ForwardObserver observer);

    @Override
    void close();
}
