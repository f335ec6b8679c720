package dev.lockstep.memory;

/**
 * The two memory tiers of the design: a small fast one (on-chip SRAM in the rack-scale design, the
 * caches' worth of memory here) and a large one (HBM there, DRAM here).
 */
public enum MemoryTier {
    SRAM,
    HBM
}
