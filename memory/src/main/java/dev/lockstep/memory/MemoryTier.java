package dev.lockstep.memory;

/**
 * The memory tiers of the design: a small fast one (on-chip SRAM in the rack-scale design, the caches' worth
 * of memory here), a large one (HBM there, DRAM here), and a file-backed one for cold KV pages (an mmapped
 * spill file on local disk).
 */
public enum MemoryTier {
    SRAM,
    HBM,
    DISK
}
