package dev.lockstep.memory;

/**
 * Layout of one KV block: {@link #BLOCK_TOKENS} consecutive positions of one layer, float32, native order.
 * Keys are stored transposed so that the scores of all positions of a block against one query are lane-wise
 * fma chains over the head dimension (no horizontal sums); values are stored by position so that the
 * weighted sum runs over whole rows.
 *
 * <pre>
 * key block   (kvHeads * headDim * 16 floats):  [kvHead][d][slot]
 *   | h0 d0: s0 s1 ... s15 | h0 d1: s0 ... s15 | ... | h0 d(D-1) | h1 d0: ... | ...
 * value block (16 * kvHeads * headDim floats):  [slot][kvHead][d]
 *   | s0: h0 d0..d(D-1) h1 d0..d(D-1) ... | s1: ... | ... | s15 |
 * </pre>
 *
 * The block is the unit of the paged KV cache to come (a page holds one block per layer), so the contiguous
 * cache and the paged one share this layout and the attention kernels.
 */
public final class KvBlockDescriptor {
    public static final int VERSION = 1;
    public static final int BLOCK_TOKENS = 16;

    private KvBlockDescriptor() {
    }

    public static long blockBytes(int kvHeads, int headDim) {
        return (long) kvHeads * headDim * BLOCK_TOKENS * Float.BYTES;
    }

    /** Offset in a key block of (kvHead, d, slot). */
    public static long keyOffsetBytes(int headDim, int kvHead, int d, int slot) {
        return (((long) kvHead * headDim + d) * BLOCK_TOKENS + slot) * Float.BYTES;
    }

    /** Offset in a key block of the first element of kvHead (its [headDim][16] sub-block). */
    public static long keyHeadOffsetBytes(int headDim, int kvHead) {
        return keyOffsetBytes(headDim, kvHead, 0, 0);
    }

    /** Offset in a value block of (slot, kvHead, d). */
    public static long valueOffsetBytes(int kvHeads, int headDim, int slot, int kvHead, int d) {
        return (((long) slot * kvHeads + kvHead) * headDim + d) * Float.BYTES;
    }

    public static int blockOf(int position) {
        return position / BLOCK_TOKENS;
    }

    public static int slotOf(int position) {
        return position % BLOCK_TOKENS;
    }

    public static int blocksFor(int positions) {
        return (positions + BLOCK_TOKENS - 1) / BLOCK_TOKENS;
    }
}
