package dev.lockstep.moe;

import dev.lockstep.memory.LockstepException;

/**
 * A forward produced NaN or infinity. Weights are checked finite at load, so this means activations
 * overflowed (weights far outside what training produces, or a model that does not fit its config); the
 * message names the position and where in the forward it was first seen. The KV cache is left as it was
 * before the forward (nothing is committed), so the session can go on from its last good position.
 */
public final class NonFiniteException extends LockstepException {
    /** {@code layer} argument of {@link #check} for the logits. */
    public static final int LOGITS = -1;

    private final int position;

    public NonFiniteException(String message, int position) {
        super(message);
        this.position = position;
    }

    /** The sequence position of the first token whose values were not finite. */
    public int position() {
        return position;
    }

    /**
     * Throws if any of {@code values[0, length)} is NaN or infinite; {@code values} holds rows of {@code rowLength}
     * floats for positions {@code firstPosition, firstPosition + 1, ...}; {@code layer} is the layer whose output
     * they are, or {@link #LOGITS} for the logits. Allocates nothing when all are finite (it runs every forward).
     */
    public static void check(float[] values, int length, int rowLength, int firstPosition, int layer) {
        for (int i = 0; i < length; i++) {
            float v = values[i];
            if (v - v != 0) { // NaN or +-Infinity
                int position = firstPosition + i / rowLength;
                String where = layer == LOGITS ? "the logits" : "the hidden state after layer " + layer;
                throw new NonFiniteException("forward produced a non-finite value (" + v + ") in " + where + " at position "
                        + position + " (element " + (i % rowLength) + "); the weights or the config do not describe a working model",
                        position);
            }
        }
    }
}
