package dev.lockstep.moe;

/** Per-session scratch buffers of a family's forward pass; opaque to callers. */
public interface ForwardState {
    /** Tokens one forward call may process without growing the buffers. */
    int capacityTokens();

    /** A batch owned by this state, for the one-sequence {@link CausalLm#forward(int[], int, int, dev.lockstep.moe.kv.KvCache, ForwardState, float[], LogitsMode, ForwardObserver) forward}. */
    ForwardBatch batch();
}
