package dev.lockstep.moe;

import dev.lockstep.memory.KvPagePool;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.moe.kv.KvCache;

/**
 * A loaded causal language model. {@link #forward} runs a batch of tokens of one or many sequences, each at
 * the position following what its cache already holds, appends their keys and values to the caches, and
 * writes logits. A prefill is many tokens of one sequence (matrix-matrix); a decode step one token per
 * sequence. Every element is computed with the same operation order whatever the batch, so a token's logits
 * are bit-identical alone, in a prefill block or batched with other sessions.
 *
 * <p>A model is immutable after loading and may serve several sessions, each with its own cache, and
 * several schedulers, each with its own {@link ForwardState}; one forward runs at a time per model (it shares the model's worker pool).
 */
public interface CausalLm extends AutoCloseable {
    ModelSummary summary();

    /** Where the weights live: the placement plan's decision for every packed tensor, bytes per tier. */
    dev.lockstep.memory.TierPlacement placement();

    /**
     * Weight bytes one decode token reads: every matrix it multiplies as packed (top-k experts of average size per
     * MoE layer, lm_head, one embedding row). With the machine's read bandwidth this gives the decode roofline.
     */
    long weightBytesPerToken();

    int vocabSize();

    /**
     * Every matrix the forwards multiply, as the kernels run them (for the kernel warm-up at load, which runs the
     * kernels on slices of these; read-only).
     */
    java.util.List<dev.lockstep.kernels.WeightMatrix> weightMatrices();

    /** Largest position the model was configured for ({@code max_position_embeddings}). */
    int maxPositions();

    /** A KV cache for up to {@code capacityTokens} positions of one sequence, with a page pool of its own. */
    KvCache newKvCache(int capacityTokens);

    /** A page pool of {@code pages} pages ({@link KvPagePool#pageBytes()} each) that many sequences share. */
    KvPagePool newKvPagePool(MemoryTier tier, int pages);

    /**
     * KV bytes one decode token reads at a context of {@code contextTokens} positions: every layer's key and value
     * blocks up to that position (a sliding-window layer only its window's blocks; MLA its latent rows).
     */
    default long kvBytesPerToken(int contextTokens) {
        return kvLayout().bytesPerPosition() * contextTokens;
    }

    /** What each layer keeps per position in a KV page (grouped-query K/V, or MLA's latent row). */
    dev.lockstep.memory.KvLayout kvLayout();

    /** Bytes of one KV page of this model: every layer's keys and values of 16 positions. */
    long kvPageBytes();

    /** Scratch for forwards of up to {@code maxBatchTokens} tokens at once; grows when a larger block comes. */
    ForwardState newState(int maxBatchTokens);

    /**
     * Runs every token of {@code batch}: appends its K/V to its sequence's cache at its position (each sequence's
     * cache is reserved and then committed by as many positions as it has tokens) and writes one row of
     * {@code vocab} logits per token that wants them, in batch order. A token's logits and K/V are bit-identical
     * whatever its batch mates. On failure (a bad token id, a full pool, non-finite values) no sequence commits
     * anything.
     */
    void forward(ForwardBatch batch, ForwardState state, float[] logits, ForwardObserver observer);

    /**
     * One sequence: runs {@code tokens[off .. off+n)} at positions {@code cache.length() ..} and writes logits:
     * for {@link LogitsMode#ALL} {@code n * vocab} floats (row t = position {@code cache.length()+t} before the
     * call), for {@link LogitsMode#LAST} the last token's {@code vocab} floats.
     */
    default void forward(int[] tokens, int off, int n, KvCache cache, ForwardState state, float[] logits, LogitsMode mode,
                         ForwardObserver observer) {
        if (n <= 0) {
            throw new IllegalArgumentException("forward needs at least one token, got " + n);
        }
        if (off < 0 || (long) off + n > tokens.length) {
            throw new IllegalArgumentException("tokens[" + off + ", " + ((long) off + n) + ") is outside an array of " + tokens.length);
        }
        ForwardBatch batch = state.batch();
        batch.clear();
        batch.add(batch.addSequence(cache), tokens, off, n, mode);
        try {
            forward(batch, state, logits, observer);
        } finally {
            batch.clear();
        }
    }

    @Override
    void close();

    /** How this model's forwards run (fork-join, or a compiled schedule over workers). */
    default ExecutionPlan executionPlan() {
        return ExecutionPlan.FORK_JOIN;
    }

    /** Under a schedule: its executor (step latency, drift, vectors sent); null when fork-join. */
    default dev.lockstep.interconnect.schedule.ScheduleExecutor scheduleExecutor() {
        return null;
    }

    /** Under a schedule: the compiled schedule of a batch of {@code tokens} tokens and {@code logitsRows} logits rows, or null. */
    default dev.lockstep.interconnect.schedule.Schedule schedule(int tokens, int logitsRows) {
        return null;
    }

    /** When disaggregated ({@link ExecutionPlan#disaggregated}): the pools' busy time, overlap and link traffic so far; null otherwise. */
    default DisaggregationStats disaggregationStats() {
        return null;
    }
}
