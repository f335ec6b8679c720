package dev.lockstep.moe;

import dev.lockstep.memory.LockstepException;

/**
 * A forward produced NaN or infinity. Weights are checked finite at load, so this means activations
 * overflowed (weights far outside what training produces, or a model that does not fit its config); the
 * message names the position and where in the forward it was first seen. The KV caches are left as they were
 * before the forward (nothing is committed), so the session can go on from its last good position.
 */
public final class NonFiniteException extends LockstepException {
    /** {@code layer} argument of {@link #check} for the logits. */
    public static final int LOGITS = -1;

    private final int position;
    private final int batchSequence;

    public NonFiniteException(String message, int position, int batchSequence) {
        super(message);
        this.position = position;
        this.batchSequence = batchSequence;
    }

    /** The sequence (its index in the forward's {@link ForwardBatch}) the token belongs to. */
    public int batchSequence() {
        return batchSequence;
    }

    /** The sequence position of the first token whose values were not finite. */
    public int position() {
        return position;
    }

    /**
     * Throws if any of the first {@code rows} rows of {@code rowLength} floats in {@code values} holds NaN or
     * infinity: row r is token r of {@code batch}, or with {@code logitsRows} the r-th token that wants logits;
     * {@code layer} is the layer whose output they are, or {@link #LOGITS}. Allocates nothing when all are
     * finite (it runs every forward).
     */
    public static void check(float[] values, int rows, int rowLength, ForwardBatch batch, boolean logitsRows, int layer) {
        int length = rows * rowLength;
        for (int i = 0; i < length; i++) {
            float v = values[i];
            if (v - v != 0) { // NaN or +-Infinity
                int token = logitsRows ? batch.logitsToken(i / rowLength) : i / rowLength;
                int position = batch.position(token);
                String where = layer == LOGITS ? "the logits" : "the hidden state after layer " + layer;
                throw new NonFiniteException("forward produced a non-finite value (" + v + ") in " + where + " at position "
                        + position + " (element " + (i % rowLength) + "); the weights or the config do not describe a working model",
                        position, batch.sequence(token));
            }
        }
    }
}
