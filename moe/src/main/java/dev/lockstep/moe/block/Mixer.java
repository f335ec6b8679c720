package dev.lockstep.moe.block;

import dev.lockstep.memory.KvLayout;

/** The token-mixing half of a decoder layer: grouped-query attention or DeepSeek's multi-head latent attention. */
public sealed interface Mixer permits AttentionBlock, MlaBlock {
    /** What this layer keeps per position in a KV page. */
    KvLayout.Layer kvLayer();

    /** Grows the RoPE tables to cover positions {@code [0, n)}; call before a parallel forward. */
    void ensureRope(int n);

    /** Weight bytes one token's forward streams through this block. */
    long weightBytesPerToken();
}
