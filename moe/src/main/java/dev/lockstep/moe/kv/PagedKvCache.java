package dev.lockstep.moe.kv;

import dev.lockstep.memory.KvBlockDescriptor;
import dev.lockstep.memory.KvPagePool;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.memory.MemoryTier;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * The KV cache: a page table mapping each block of {@link KvBlockDescriptor#BLOCK_TOKENS} positions of one
 * sequence to a page of a {@link KvPagePool}. Pages are taken as the sequence grows ({@link #reserve}) and given
 * back on {@link #truncate} and {@link #close}. A page may be shared: {@link #fork} shares every page of the
 * parent, the prefix cache lends full pages ({@link #attach}); before this sequence writes into a page it
 * holds with others, {@link #reserve} swaps in a private copy (copy-on-write), so a sharer never sees another's
 * writes.
 *
 * <pre>
 *   page table: block 0 -> page 7, block 1 -> page 2, block 2 -> page 9 (partly filled: length = 37)
 *   key block (layer l, block b) = pool.segment(p) at pool.keyBlockOffsetBytes(p, l), p = pageTable[b]
 * </pre>
 *
 * One thread at a time (the session that owns it); the pool it draws from is shared and thread-safe.
 */
public final class PagedKvCache implements KvCache {
    private final KvPagePool pool;
    private final boolean ownsPool;
    private final int capacityTokens;
    private int[] pageTable;
    private int mapped; // blocks [0, mapped) have a page
    private int length;
    private boolean closed;

    /** A sequence of up to {@code capacityTokens} positions drawing pages from {@code pool}. */
    public PagedKvCache(KvPagePool pool, int capacityTokens) {
        this(pool, capacityTokens, false);
    }

    private PagedKvCache(KvPagePool pool, int capacityTokens, boolean ownsPool) {
        if (capacityTokens <= 0) {
            throw new IllegalArgumentException("capacityTokens must be positive, got " + capacityTokens);
        }
        this.pool = pool;
        this.ownsPool = ownsPool;
        this.capacityTokens = capacityTokens;
        this.pageTable = new int[Math.min(KvBlockDescriptor.blocksFor(capacityTokens), 64)];
    }

    /** A cache with a pool of its own, exactly large enough for {@code capacityTokens} positions; closing it frees the pool. */
    public static PagedKvCache standalone(int layers, int kvHeads, int headDim, int capacityTokens) {
        if (capacityTokens <= 0) {
            throw new IllegalArgumentException("capacityTokens must be positive, got " + capacityTokens);
        }
        KvPagePool pool = new KvPagePool(MemoryTier.HBM, layers, kvHeads, headDim, KvBlockDescriptor.blocksFor(capacityTokens));
        return new PagedKvCache(pool, capacityTokens, true);
    }

    /** A cache with a pool of its own for {@code layout}, exactly large enough for {@code capacityTokens} positions. */
    public static PagedKvCache standalone(dev.lockstep.memory.KvLayout layout, int capacityTokens) {
        if (capacityTokens <= 0) {
            throw new IllegalArgumentException("capacityTokens must be positive, got " + capacityTokens);
        }
        KvPagePool pool = new KvPagePool(MemoryTier.HBM, layout, KvBlockDescriptor.blocksFor(capacityTokens));
        return new PagedKvCache(pool, capacityTokens, true);
    }

    public KvPagePool pool() {
        return pool;
    }

    @Override
    public dev.lockstep.memory.KvLayout layout() {
        return pool.layout();
    }

    @Override
    public int layers() {
        return pool.layers();
    }

    @Override
    public int kvHeads() {
        return pool.kvHeads();
    }

    @Override
    public int headDim() {
        return pool.headDim();
    }

    @Override
    public int length() {
        return length;
    }

    @Override
    public int capacityTokens() {
        return capacityTokens;
    }

    /** Blocks that have a page (the last may be partly filled, or reserved and not yet written). */
    public int mappedBlocks() {
        return mapped;
    }

    /** The page holding block {@code block}. */
    public int page(int block) {
        java.util.Objects.checkIndex(block, mapped);
        return pageTable[block];
    }

    /**
     * Makes positions {@code [length(), length() + n)} writable: pages for new blocks, a private copy of a
     * shared page this sequence is about to write into. On a full pool it throws
     * {@link dev.lockstep.memory.KvPoolExhaustedException} having kept what it got (released by truncate/close).
     */
    @Override
    public void reserve(int n) {
        checkOpen();
        if (n < 0 || (long) length + n > capacityTokens) {
            throw new LockstepException("KV cache full: " + length + " positions held, " + n + " more requested, capacity "
                    + capacityTokens + " (raise the context size)");
        }
        if (n == 0) {
            return;
        }
        int firstBlock = KvBlockDescriptor.blockOf(length), endBlock = KvBlockDescriptor.blocksFor(length + n);
        for (int b = firstBlock; b < Math.min(endBlock, mapped); b++) {
            pageTable[b] = pool.copyOnWrite(pageTable[b]);
        }
        while (mapped < endBlock) {
            growPageTable();
            pageTable[mapped] = pool.allocate();
            mapped++;
        }
    }

    /** Room in the page table for one more block (the capacity bounds it). */
    private void growPageTable() {
        if (mapped == pageTable.length) {
            pageTable = Arrays.copyOf(pageTable, Math.min(KvBlockDescriptor.blocksFor(capacityTokens), 2 * mapped + 1));
        }
    }

    @Override
    public MemorySegment keyBlock(int layer, int block) {
        return pool.segment(pageTable[block]);
    }

    @Override
    public long keyBlockOffsetBytes(int layer, int block) {
        return pool.keyBlockOffsetBytes(pageTable[block], layer);
    }

    @Override
    public MemorySegment valueBlock(int layer, int block) {
        return pool.segment(pageTable[block]);
    }

    @Override
    public long valueBlockOffsetBytes(int layer, int block) {
        return pool.valueBlockOffsetBytes(pageTable[block], layer);
    }

    @Override
    public void commit(int n) {
        checkOpen();
        if (n < 0 || (long) length + n > (long) mapped * KvBlockDescriptor.BLOCK_TOKENS) {
            throw new IllegalStateException("commit of " + n + " positions at " + length + " without a reserve covering them");
        }
        length += n;
    }

    /** Forgets positions {@code [newLength, length())} and gives back the pages no longer needed. */
    @Override
    public void truncate(int newLength) {
        checkOpen();
        if (newLength < 0 || newLength > length) {
            throw new IllegalArgumentException("cannot truncate a " + length + "-position cache to " + newLength);
        }
        length = newLength;
        int keep = KvBlockDescriptor.blocksFor(newLength);
        while (mapped > keep) {
            pool.release(pageTable[--mapped]);
        }
    }

    /**
     * A new sequence with this one's positions: it shares every page (partly filled ones included; the first
     * of the two to write into a shared page copies it).
     */
    public PagedKvCache fork() {
        checkOpen();
        if (ownsPool) {
            throw new IllegalStateException("a standalone cache cannot be forked (its pool is sized for one sequence)");
        }
        truncate(length); // drop pages reserved past the end
        PagedKvCache child = new PagedKvCache(pool, capacityTokens, false);
        child.pageTable = Arrays.copyOf(pageTable, Math.max(pageTable.length, 1));
        for (int b = 0; b < mapped; b++) {
            pool.retain(pageTable[b]);
        }
        child.mapped = mapped;
        child.length = length;
        return child;
    }

    /**
     * Appends a full page written by another sequence (the prefix cache): this sequence must end on a block
     * boundary. The page is shared, never written here (a later write copies it).
     */
    public void attach(int page) {
        checkOpen();
        if (length % KvBlockDescriptor.BLOCK_TOKENS != 0) {
            throw new IllegalStateException("attach needs a block boundary, length is " + length);
        }
        if (length + KvBlockDescriptor.BLOCK_TOKENS > capacityTokens) {
            throw new LockstepException("KV cache full: cannot attach a page of " + KvBlockDescriptor.BLOCK_TOKENS
                    + " positions at " + length + ", capacity " + capacityTokens);
        }
        truncate(length);
        pool.retain(page);
        growPageTable();
        pageTable[mapped++] = page;
        length += KvBlockDescriptor.BLOCK_TOKENS;
    }

    @Override
    public boolean isClosed() {
        return closed;
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("KV cache is closed");
        }
    }

    /** Gives every page back (and frees a standalone cache's pool). A second close does nothing. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        while (mapped > 0) {
            pool.release(pageTable[--mapped]);
        }
        closed = true;
        if (ownsPool) {
            pool.close();
        }
    }
}
