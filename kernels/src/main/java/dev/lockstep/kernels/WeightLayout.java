package dev.lockstep.kernels;

/**
 * How a {@link WeightMatrix}'s elements are ordered in memory.
 *
 * <pre>
 * ROW_MAJOR (as in the checkpoint): element (r, c) at (r * cols + c) * bytes
 *
 * TILED, T = tileRows (the kernel's vector lane count), P = ceil(cols / 2) column pairs:
 *   rows are grouped in tiles of T (the last tile zero-padded); inside a tile, for each column pair p,
 *   the T rows' elements (c = 2p, 2p + 1) sit side by side:
 *   tile j: | p=0: r0c0 r0c1 r1c0 r1c1 ... r(T-1)c0 r(T-1)c1 | p=1: r0c2 r0c3 ... | ... | p=P-1 ... |
 *   element (r, c) at ((r / T) * P * T * 2 + (c / 2) * T * 2 + (r % T) * 2 + c % 2) * bytes
 * </pre>
 *
 * For bf16, one 32-bit lane then holds (r, 2p) in its low half and (r, 2p + 1) in its high half: a shift and
 * a mask widen both to float32, and T rows advance together with no horizontal reduction.
 */
public enum WeightLayout {
    ROW_MAJOR,
    TILED
}
