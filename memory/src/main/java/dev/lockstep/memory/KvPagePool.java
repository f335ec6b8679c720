package dev.lockstep.memory;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * One engine's KV memory: a fixed number of pages, each holding {@link KvBlockDescriptor#BLOCK_TOKENS}
 * positions of every layer, taken from a {@link TierArena} in slabs as first needed and handed out by reference count.
 * Sequences map their blocks to pages through a page table; a page shared by several sequences (a fork, the
 * prefix cache) is copied before one of them writes into it (the caller's job: {@link #refCount} tells it).
 *
 * <pre>
 * page p (pageBytes = layers * 2 * blockBytes), at (p % slabPages) * pageBytes in {@link #segment(int) segment(p)}:
 *   | layer 0: key block | layer 0: value block | layer 1: key block | ... | layer L-1: value block |
 * </pre>
 *
 * Block layouts are {@link KvBlockDescriptor}'s. When no page is free, {@link #allocate} first asks the
 * {@link Reclaimer} (the prefix cache) to give back pages only it holds, then fails with
 * {@link KvPoolExhaustedException}; the pool is never grown, so a full pool refuses instead of taking memory
 * the placement plan gave to something else.
 *
 * <p>Thread-safe: allocation and reference counts are guarded by this object's monitor (a reclaimer that keeps
 * state of its own synchronizes on the pool too, so the two never deadlock). Page contents are not guarded:
 * a page is written only by the one sequence that holds it alone.
 */
public final class KvPagePool implements AutoCloseable {
    private static final long ALIGNMENT_BYTES = 64;
    /** Memory is taken from the tier in slabs of about this size, as pages are first needed. */
    private static final long SLAB_BYTES = 8L << 20;

    /** Gives pages back to the pool when it runs dry (the prefix cache evicting what no sequence uses). */
    public interface Reclaimer {
        /** Releases up to {@code pages} pages that only the reclaimer holds; returns how many it released. Runs under the pool's lock. */
        int reclaim(int pages);
    }

    private final int layers;
    private final int kvHeads;
    private final int headDim;
    private final long blockBytes;
    private final long pageBytes;
    private final int pageCount;
    private final TierArena arena;
    private final int slabPages;
    private final MemorySegment[] slabs; // allocated on first need: a large pool costs nothing until used
    private int slabCount;
    private final int[] refCounts;
    private final int[] freeStack; // free page ids; the top is handed out next
    private int freeCount;
    private Reclaimer reclaimer;
    private long allocations;
    private long copies;
    private boolean closed;

    public KvPagePool(MemoryTier tier, int layers, int kvHeads, int headDim, int pageCount) {
        if (layers <= 0 || kvHeads <= 0 || headDim <= 0 || pageCount <= 0) {
            throw new IllegalArgumentException("layers, kvHeads, headDim and pageCount must be positive: "
                    + layers + ", " + kvHeads + ", " + headDim + ", " + pageCount);
        }
        this.layers = layers;
        this.kvHeads = kvHeads;
        this.headDim = headDim;
        this.blockBytes = KvBlockDescriptor.blockBytes(kvHeads, headDim);
        this.pageBytes = 2L * layers * blockBytes;
        this.pageCount = pageCount;
        this.slabPages = (int) Math.max(1, Math.min(pageCount, SLAB_BYTES / pageBytes));
        int slabTotal = (pageCount + slabPages - 1) / slabPages;
        this.slabs = new MemorySegment[slabTotal];
        this.arena = new TierArena(tier, (pageBytes * slabPages + ALIGNMENT_BYTES) * slabTotal);
        this.refCounts = new int[pageCount];
        this.freeStack = new int[pageCount];
    }

    /** Takes the next slab from the arena and puts its pages on the free stack, lowest on top. */
    private boolean growSlab() {
        if (slabCount == slabs.length) {
            return false;
        }
        int first = slabCount * slabPages, count = Math.min(slabPages, pageCount - first);
        slabs[slabCount] = arena.allocate("KV pages " + first + ".." + (first + count - 1), pageBytes * slabPages, ALIGNMENT_BYTES);
        slabCount++;
        for (int i = count - 1; i >= 0; i--) {
            freeStack[freeCount++] = first + i;
        }
        return true;
    }

    /** Bytes one page takes: {@code layers * 2 * blockBytes(kvHeads, headDim)}. */
    public static long pageBytes(int layers, int kvHeads, int headDim) {
        return 2L * layers * KvBlockDescriptor.blockBytes(kvHeads, headDim);
    }

    public int layers() {
        return layers;
    }

    public int kvHeads() {
        return kvHeads;
    }

    public int headDim() {
        return headDim;
    }

    public int pageCount() {
        return pageCount;
    }

    public long pageBytes() {
        return pageBytes;
    }

    public MemoryTier tier() {
        return arena.tier();
    }

    /** The segment holding {@code page}; its blocks are at {@link #keyBlockOffsetBytes} / {@link #valueBlockOffsetBytes}. */
    public MemorySegment segment(int page) {
        return slabs[page / slabPages];
    }

    public long keyBlockOffsetBytes(int page, int layer) {
        return (page % slabPages) * pageBytes + 2L * layer * blockBytes;
    }

    public long valueBlockOffsetBytes(int page, int layer) {
        return (page % slabPages) * pageBytes + (2L * layer + 1) * blockBytes;
    }

    /** Sets who is asked for pages when none is free (one reclaimer per pool). */
    public synchronized void setReclaimer(Reclaimer reclaimer) {
        if (this.reclaimer != null && reclaimer != null) {
            throw new IllegalStateException("this pool already has a reclaimer");
        }
        this.reclaimer = reclaimer;
    }

    /** A free page with reference count 1; its contents are whatever the last holder left. */
    public synchronized int allocate() {
        checkOpen();
        if (freeCount == 0 && !growSlab() && reclaimer != null) {
            reclaimer.reclaim(1);
        }
        if (freeCount == 0) {
            throw new KvPoolExhaustedException("KV page pool exhausted: all " + pageCount + " pages of " + pageBytes
                    + " bytes (" + KvBlockDescriptor.BLOCK_TOKENS + " positions each) are in use; end sessions or give the "
                    + arena.tier() + " tier more memory");
        }
        int page = freeStack[--freeCount];
        refCounts[page] = 1;
        allocations++;
        return page;
    }

    /** One more holder of {@code page}. */
    public synchronized void retain(int page) {
        checkHeld(page);
        refCounts[page]++;
    }

    /** One holder fewer; the page is free again when none is left. After {@link #close()} it does nothing. */
    public synchronized void release(int page) {
        if (closed) {
            return;
        }
        checkHeld(page);
        if (--refCounts[page] == 0) {
            freeStack[freeCount++] = page;
        }
    }

    public synchronized int refCount(int page) {
        java.util.Objects.checkIndex(page, pageCount);
        return refCounts[page];
    }

    /**
     * A page of its own for a holder of the shared {@code page}: a new page with the same contents (every
     * layer's key and value blocks), the old one released. Returns {@code page} itself when the caller is
     * already its only holder.
     */
    public synchronized int copyOnWrite(int page) {
        checkHeld(page);
        if (refCounts[page] == 1) {
            return page;
        }
        int copy = allocate();
        MemorySegment.copy(segment(page), keyBlockOffsetBytes(page, 0), segment(copy), keyBlockOffsetBytes(copy, 0), pageBytes);
        refCounts[page]--;
        copies++;
        return copy;
    }

    /** Pages no one holds (those of slabs not yet taken from the tier included). */
    public synchronized int freePages() {
        return pageCount - usedPages();
    }

    public synchronized int usedPages() {
        return Math.min(pageCount, slabCount * slabPages) - freeCount;
    }

    /** Bytes taken from the tier so far (slabs allocated). */
    public synchronized long reservedBytes() {
        return slabCount * slabPages * pageBytes;
    }

    /** Pages handed out by {@link #allocate} since the pool was made (copies included). */
    public synchronized long allocations() {
        return allocations;
    }

    /** Copy-on-write copies made since the pool was made. */
    public synchronized long copies() {
        return copies;
    }

    /** Reference counts of every page (a snapshot, for invariant checks). */
    public synchronized int[] refCountsSnapshot() {
        return Arrays.copyOf(refCounts, pageCount);
    }

    private void checkHeld(int page) {
        checkOpen();
        java.util.Objects.checkIndex(page, pageCount);
        if (refCounts[page] <= 0) {
            throw new IllegalStateException("KV page " + page + " is not held by anyone (double release?)");
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("KV page pool is closed");
        }
    }

    /** Frees the memory; pages still held become invalid (their holders must be closed first). */
    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            arena.close();
        }
    }
}
