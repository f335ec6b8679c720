package dev.lockstep.moe;

/** Per-session scratch buffers of a family's forward pass; opaque to callers. */
public interface ForwardState {
    /** Tokens one forward call may process without growing the buffers. */
    int capacityTokens();
}
