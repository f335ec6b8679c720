package dev.lockstep.moe.block;

/** The feed-forward half of a decoder layer: routed experts or a dense MLP. */
public sealed interface FeedForward permits SparseMoeBlock, DenseMlpBlock {
    /** Weight bytes one token's forward streams through this block. */
    long weightBytesPerToken();
}
