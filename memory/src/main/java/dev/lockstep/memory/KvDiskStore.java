package dev.lockstep.memory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * The {@link MemoryTier#DISK} tier of KV memory: a spill file of fixed-size slots, each holding one page's
 * blocks, mapped read-write. Cold pages (kept by the prefix cache, used by no session) move here when the
 * HBM pool runs dry and come back when a session reuses them; the bytes round-trip exactly, so a restored
 * page gives the same logits as the one computed.
 *
 * <pre>
 * slot s at s * pageBytes:  | layer 0 keys | layer 0 values | layer 1 keys | ... | layer L-1 values |
 * </pre>
 *
 * The file is created in the given directory and deleted on {@link #close()}. Thread-safe like
 * {@link KvPagePool} (slot bookkeeping under this object's monitor; a slot's bytes are touched by one holder).
 */
public final class KvDiskStore implements AutoCloseable {
    private final Path file;
    private final long pageBytes;
    private final int slots;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment mapping;
    private final int[] freeStack;
    private int freeCount;
    private boolean closed;

    /** A spill file of {@code capacityBytes / pageBytes} slots in {@code directory}. */
    public KvDiskStore(Path directory, long pageBytes, long capacityBytes) {
        if (pageBytes <= 0 || capacityBytes < pageBytes) {
            throw new IllegalArgumentException("the DISK tier (--kv-disk) needs room for at least one KV page of " + pageBytes
                    + " bytes, got " + capacityBytes + " bytes");
        }
        long n = capacityBytes / pageBytes;
        this.slots = (int) Math.min(n, Integer.MAX_VALUE);
        this.pageBytes = pageBytes;
        try {
            this.file = Files.createTempFile(directory, "lockstep-kv-", ".pages");
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
                this.mapping = ch.map(FileChannel.MapMode.READ_WRITE, 0, pageBytes * slots, arena);
            }
        } catch (IOException e) {
            arena.close();
            throw new LockstepException("DISK tier: cannot create a " + pageBytes * slots + "-byte KV spill file in " + directory
                    + ": " + e.getMessage(), e);
        }
        this.freeStack = new int[slots];
        for (int i = 0; i < slots; i++) {
            freeStack[i] = slots - 1 - i;
        }
        this.freeCount = slots;
    }

    public Path file() {
        return file;
    }

    public int slots() {
        return slots;
    }

    public long pageBytes() {
        return pageBytes;
    }

    public MemorySegment segment() {
        return mapping;
    }

    public long slotOffsetBytes(int slot) {
        java.util.Objects.checkIndex(slot, slots);
        return slot * pageBytes;
    }

    /** A free slot, or -1 when the file is full. */
    public synchronized int allocate() {
        if (closed) {
            throw new IllegalStateException("KV disk store is closed");
        }
        return freeCount == 0 ? -1 : freeStack[--freeCount];
    }

    public synchronized void free(int slot) {
        java.util.Objects.checkIndex(slot, slots);
        if (closed) {
            return;
        }
        if (freeCount == slots) {
            throw new IllegalStateException("KV disk slot " + slot + " freed twice");
        }
        freeStack[freeCount++] = slot;
    }

    public synchronized int usedSlots() {
        return slots - freeCount;
    }

    /** Unmaps and deletes the file. A second close does nothing. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        arena.close();
        try {
            Files.deleteIfExists(file);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot delete the KV spill file " + file, e);
        }
    }
}
