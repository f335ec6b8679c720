package dev.lockstep.moe;

import dev.lockstep.moe.kv.KvCache;

import java.util.Arrays;

/**
 * The tokens of one forward, from any number of sequences, as llama.cpp's {@code llama_batch}: each token
 * carries its sequence (the {@link KvCache} holding its page table), its position, and whether it wants logits.
 * Prefill chunks and decode tokens of different sessions run in one forward; a token's result does not depend
 * on its batch mates, bit for bit.
 *
 * <p>Positions are assigned, not chosen: a sequence's tokens take positions {@code cache.length(), +1, ...} in
 * the order they are added, so each sequence appends a contiguous run. Logit rows come out in batch order, one
 * per token that asked ({@link #logitsRow}).
 *
 * <p>Reusable: {@link #clear()} and fill again; it allocates only to grow. Not thread-safe.
 */
public final class ForwardBatch {
    private int[] tokens;
    private int[] positions;
    private int[] sequenceOf;
    private boolean[] wantsLogits;
    private int[] logitsTokens; // batch index of logits row r
    private int size;
    private int logitsRows;
    private KvCache[] caches = new KvCache[4];
    private int[] sequenceTokens = new int[4];
    private int sequences;

    public ForwardBatch(int capacityTokens) {
        int c = Math.max(1, capacityTokens);
        tokens = new int[c];
        positions = new int[c];
        sequenceOf = new int[c];
        wantsLogits = new boolean[c];
        logitsTokens = new int[c];
    }

    public void clear() {
        Arrays.fill(caches, 0, sequences, null);
        size = 0;
        logitsRows = 0;
        sequences = 0;
    }

    /** Adds a sequence (once per batch); returns its index for {@link #add}. */
    public int addSequence(KvCache cache) {
        for (int s = 0; s < sequences; s++) {
            if (caches[s] == cache) {
                throw new IllegalArgumentException("sequence " + s + " of this batch already uses this KV cache");
            }
        }
        if (sequences == caches.length) {
            caches = Arrays.copyOf(caches, 2 * sequences);
            sequenceTokens = Arrays.copyOf(sequenceTokens, 2 * sequences);
        }
        caches[sequences] = cache;
        sequenceTokens[sequences] = 0;
        return sequences++;
    }

    /** Appends {@code token} to sequence {@code sequence} at its next position. */
    public void add(int sequence, int token, boolean logits) {
        java.util.Objects.checkIndex(sequence, sequences);
        if (size == tokens.length) {
            int c = 2 * size;
            tokens = Arrays.copyOf(tokens, c);
            positions = Arrays.copyOf(positions, c);
            sequenceOf = Arrays.copyOf(sequenceOf, c);
            wantsLogits = Arrays.copyOf(wantsLogits, c);
            logitsTokens = Arrays.copyOf(logitsTokens, c);
        }
        tokens[size] = token;
        positions[size] = caches[sequence].length() + sequenceTokens[sequence]++;
        sequenceOf[size] = sequence;
        wantsLogits[size] = logits;
        if (logits) {
            logitsTokens[logitsRows++] = size;
        }
        size++;
    }

    /** Adds {@code tokens[off, off+n)} to {@code sequence}; only the last wants logits when {@code mode} is LAST. */
    public void add(int sequence, int[] tokens, int off, int n, LogitsMode mode) {
        for (int t = 0; t < n; t++) {
            add(sequence, tokens[off + t], mode == LogitsMode.ALL || t == n - 1);
        }
    }

    /** Adds {@code tokens[off, off+n)} to {@code sequence}; the last wants logits when {@code lastWantsLogits}, no other does. */
    public void add(int sequence, int[] tokens, int off, int n, boolean lastWantsLogits) {
        for (int t = 0; t < n; t++) {
            add(sequence, tokens[off + t], lastWantsLogits && t == n - 1);
        }
    }

    public int size() {
        return size;
    }

    public int token(int i) {
        return tokens[i];
    }

    public int position(int i) {
        return positions[i];
    }

    public int sequence(int i) {
        return sequenceOf[i];
    }

    public KvCache cache(int i) {
        return caches[sequenceOf[i]];
    }

    public boolean wantsLogits(int i) {
        return wantsLogits[i];
    }

    public int sequences() {
        return sequences;
    }

    public KvCache sequenceCache(int sequence) {
        return caches[sequence];
    }

    /** Tokens of {@code sequence} in this batch. */
    public int sequenceTokens(int sequence) {
        return sequenceTokens[sequence];
    }

    /** Tokens that want logits: the rows of the logits a forward writes. */
    public int logitsRows() {
        return logitsRows;
    }

    /** The batch index of logits row {@code row}. */
    public int logitsToken(int row) {
        return logitsTokens[row];
    }

    /** The largest position in the batch, or -1 when empty. */
    public int maxPosition() {
        int max = -1;
        for (int i = 0; i < size; i++) {
            max = Math.max(max, positions[i]);
        }
        return max;
    }
}
