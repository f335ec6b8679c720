package dev.lockstep.memory;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * One engine's KV memory: a fixed number of pages, each holding {@link KvBlockDescriptor#BLOCK_TOKENS}
 * positions of every layer (a key block and a value block per layer), taken from a {@link TierArena} in slabs
 * as first needed and handed out by reference count.
 * Sequences map their blocks to pages through a page table; a page shared by several sequences (a fork, the
 * prefix cache) is copied before one of them writes into it (the caller's job: {@link #refCount} tells it).
 *
 * <pre>
 * slab (S = slabPages pages; each layer's key and value regions S blocks of that layer's block bytes, per its
 * {@link KvLayout}), layer-major as vLLM's per-layer KV tensors:
 *   | layer 0 keys: page 0 .. page S-1 | layer 0 values: page 0 .. S-1 | layer 1 keys | ... | layer L-1 values |
 * key block (page p, layer l) = slab of p at (keyRegion(l) + (p % S) * keyBlockBytes(l)); an MLA layer's key
 * region is empty
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
    private final KvLayout layout;
    /** Per layer: where its key region and its value region start within a slab (each {@code slabPages} blocks). */
    private final long[] keyRegion, valueRegion;
    private final long pageBytes;
    private final int pageCount;
    private final TierArena arena;
    private final int slabPages;
    /** Bytes of one (layer, keys or values) region of a slab: slabPages blocks. */
    private final MemorySegment[] slabs; // allocated on first need: a large pool costs nothing until used
    private int slabCount;
    /** Per page: its slab and its byte offset there (lookups on the attention path: no division). */
    private final MemorySegment[] segmentOfPage;
    private final long[] offsetOfPage;
    private final int[] refCounts;
    private final int[] freeStack; // free page ids; the top is handed out next
    private int freeCount;
    private Reclaimer reclaimer;
    private int peakUsedPages;
    private long copies;
    private boolean closed;

    public KvPagePool(MemoryTier tier, int layers, int kvHeads, int headDim, int pageCount) {
        this(tier, checkedUniform(layers, kvHeads, headDim, pageCount), pageCount);
    }

    private static KvLayout checkedUniform(int layers, int kvHeads, int headDim, int pageCount) {
        if (layers <= 0 || kvHeads <= 0 || headDim <= 0 || pageCount <= 0) {
            throw new IllegalArgumentException("layers, kvHeads, headDim and pageCount must be positive: "
                    + layers + ", " + kvHeads + ", " + headDim + ", " + pageCount);
        }
        return KvLayout.uniform(layers, kvHeads, headDim);
    }

    /** A pool of {@code pageCount} pages of {@code layout} (per layer its own key and value shapes). */
    public KvPagePool(MemoryTier tier, KvLayout layout, int pageCount) {
        if (pageCount <= 0) {
            throw new IllegalArgumentException("pageCount must be positive, got " + pageCount);
        }
        this.layout = layout;
        this.layers = layout.size();
        this.pageBytes = layout.pageBytes();
        this.pageCount = pageCount;
        this.slabPages = (int) Math.max(1, Math.min(pageCount, SLAB_BYTES / pageBytes));
        this.keyRegion = new long[layers];
        this.valueRegion = new long[layers];
        long at = 0;
        for (int l = 0; l < layers; l++) {
            keyRegion[l] = at;
            at += slabPages * layout.layer(l).keyBlockBytes();
            valueRegion[l] = at;
            at += slabPages * layout.layer(l).valueBlockBytes();
        }
        int slabTotal = (pageCount + slabPages - 1) / slabPages;
        this.slabs = new MemorySegment[slabTotal];
        this.arena = new TierArena(tier, (pageBytes * slabPages + ALIGNMENT_BYTES) * slabTotal);
        this.refCounts = new int[pageCount];
        this.freeStack = new int[pageCount];
        this.segmentOfPage = new MemorySegment[pageCount];
        this.offsetOfPage = new long[pageCount];
    }

    /** Takes the next slab from the arena and puts its pages on the free stack, lowest on top. */
    private boolean growSlab() {
        if (slabCount == slabs.length) {
            return false;
        }
        int first = slabCount * slabPages, count = Math.min(slabPages, pageCount - first);
        slabs[slabCount] = arena.allocate("KV pages " + first + ".." + (first + count - 1), pageBytes * slabPages, ALIGNMENT_BYTES);
        slabCount++;
        for (int i = 0; i < count; i++) {
            segmentOfPage[first + i] = slabs[slabCount - 1];
            offsetOfPage[first + i] = i; // the page's index in its slab: block l of it is at region(l) + i * block bytes
        }
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

    /** Each layer's key and value shapes. */
    public KvLayout layout() {
        return layout;
    }

    /** KV heads of a uniform grouped-query layout (layer 0's keys); see {@link #layout()} for per-layer shapes. */
    public int kvHeads() {
        return layout.layer(0).keyHeads();
    }

    /** Head size of a uniform grouped-query layout (layer 0's keys). */
    public int headDim() {
        return layout.layer(0).keyDim();
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
        return segmentOfPage[page];
    }

    public long keyBlockOffsetBytes(int page, int layer) {
        return keyRegion[layer] + offsetOfPage[page] * layout.layer(layer).keyBlockBytes();
    }

    public long valueBlockOffsetBytes(int page, int layer) {
        return valueRegion[layer] + offsetOfPage[page] * layout.layer(layer).valueBlockBytes();
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
        peakUsedPages = Math.max(peakUsedPages, usedPages());
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
        for (int l = 0; l < layers; l++) {
            KvLayout.Layer kv = layout.layer(l);
            MemorySegment.copy(segment(page), keyBlockOffsetBytes(page, l), segment(copy), keyBlockOffsetBytes(copy, l), kv.keyBlockBytes());
            MemorySegment.copy(segment(page), valueBlockOffsetBytes(page, l), segment(copy), valueBlockOffsetBytes(copy, l), kv.valueBlockBytes());
        }
        refCounts[page]--;
        copies++;
        return copy;
    }

    /**
     * Copies {@code page} (a page its caller holds) into {@code to} at {@code offset} as {@link KvDiskStore}
     * lays a slot out: layer by layer, keys then values.
     */
    public void writePage(int page, MemorySegment to, long offset) {
        for (int l = 0; l < layers; l++) {
            KvLayout.Layer kv = layout.layer(l);
            MemorySegment.copy(segment(page), keyBlockOffsetBytes(page, l), to, offset, kv.keyBlockBytes());
            offset += kv.keyBlockBytes();
            MemorySegment.copy(segment(page), valueBlockOffsetBytes(page, l), to, offset, kv.valueBlockBytes());
            offset += kv.valueBlockBytes();
        }
    }

    /** The inverse of {@link #writePage}: fills {@code page} from {@code from} at {@code offset}. */
    public void readPage(int page, MemorySegment from, long offset) {
        for (int l = 0; l < layers; l++) {
            KvLayout.Layer kv = layout.layer(l);
            MemorySegment.copy(from, offset, segment(page), keyBlockOffsetBytes(page, l), kv.keyBlockBytes());
            offset += kv.keyBlockBytes();
            MemorySegment.copy(from, offset, segment(page), valueBlockOffsetBytes(page, l), kv.valueBlockBytes());
            offset += kv.valueBlockBytes();
        }
    }

    /** Pages no one holds (those of slabs not yet taken from the tier included). */
    public synchronized int freePages() {
        return pageCount - usedPages();
    }

    public synchronized int usedPages() {
        return Math.min(pageCount, slabCount * slabPages) - freeCount;
    }



    /** The most pages held at once since the pool was made. */
    public synchronized int peakUsedPages() {
        return peakUsedPages;
    }

    /** Copy-on-write copies made since the pool was made. */
    public synchronized long copies() {
        return copies;
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
