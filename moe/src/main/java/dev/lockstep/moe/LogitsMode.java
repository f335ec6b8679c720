package dev.lockstep.moe;

/** Which positions of a forward block get logits (lm_head is the largest matmul; skip it where unused). */
public enum LogitsMode {
    /** Every token of the block (perplexity, golden tests). */
    ALL,
    /** Only the block's last token (generation). */
    LAST
}
