package dev.lockstep.memory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A bounded off-heap arena for one {@link MemoryTier}: allocations are zeroed, aligned, accounted against a
 * fixed capacity, and all freed together on {@link #close()}. Exceeding the capacity is an error naming the
 * tier, the request and what is left; a placement plan is expected to have sized the tier beforehand.
 * Segments may be read and written from any thread (the arena is shared).
 */
public final class TierArena implements AutoCloseable {
    private final MemoryTier tier;
    private final long capacityBytes;
    private final Arena arena = Arena.ofShared();
    private long usedBytes;

    public TierArena(MemoryTier tier, long capacityBytes) {
        if (capacityBytes <= 0) {
            throw new IllegalArgumentException("capacityBytes must be positive, got " + capacityBytes);
        }
        this.tier = tier;
        this.capacityBytes = capacityBytes;
    }

    public synchronized MemorySegment allocate(String purpose, long sizeBytes, long alignmentBytes) {
        if (sizeBytes < 0) {
            throw new IllegalArgumentException(purpose + ": negative size " + sizeBytes);
        }
        // Account the worst-case alignment padding so the capacity is a hard bound on memory taken.
        long charged = sizeBytes + alignmentBytes - 1;
        if (charged > capacityBytes - usedBytes) {
            throw new LockstepException(tier + " tier: cannot allocate " + sizeBytes + " bytes for " + purpose + " ("
                    + (capacityBytes - usedBytes) + " of " + capacityBytes + " bytes left)");
        }
        usedBytes += charged;
        return arena.allocate(sizeBytes, alignmentBytes);
    }

    /**
     * Maps {@code file} read-only for the life of this arena (a packed-weights cache: its pages are the weights).
     * Accounted against the capacity like an allocation. Returns null when the file cannot be opened.
     */
    public synchronized MemorySegment mapReadOnly(java.nio.file.Path file) {
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(file, java.nio.file.StandardOpenOption.READ)) {
            long size = ch.size();
            if (size > capacityBytes - usedBytes) {
                return null;
            }
            usedBytes += size;
            return ch.map(java.nio.channels.FileChannel.MapMode.READ_ONLY, 0, size, arena);
        } catch (java.io.IOException e) {
            return null;
        }
    }

    public MemoryTier tier() {
        return tier;
    }

    public long capacityBytes() {
        return capacityBytes;
    }

    public synchronized long usedBytes() {
        return usedBytes;
    }

    @Override
    public void close() {
        arena.close();
    }
}
