package dev.lockstep.moe.kv;

import dev.lockstep.memory.KvBlockDescriptor;
import dev.lockstep.memory.KvDiskStore;
import dev.lockstep.memory.KvPagePool;

import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Full KV pages kept for reuse across sessions, as vLLM's automatic prefix caching: a page of
 * {@link KvBlockDescriptor#BLOCK_TOKENS} positions is keyed by a hash chain, {@code key(page i) =
 * hash(key(page i-1), tokens of page i)}, so a key names the whole prefix up to the page's end. A session whose
 * tokens start with cached pages {@link PagedKvCache#attach}es them instead of computing them; since a page's
 * K/V depend only on the tokens before and in it, and the forward gives the same bits whatever the batch, a
 * reused page is bit-identical to a recomputed one.
 *
 * <p>Exact, not probabilistic: an entry keeps its tokens and its parent's key, and a lookup compares both
 * (only a page whose parent was itself found is looked up), so a hash collision can cost a miss, never a
 * wrong page. The cache holds one reference to each page it keeps; when the pool runs dry it evicts, least
 * recently used first, the pages no session holds (reference count 1): to the DISK tier when it has one (they
 * come back, byte for byte, on the next hit), else for good. Thread-safe: guarded by the pool's
 * monitor, which the pool holds when it asks for pages back.
 */
public final class PrefixCache implements KvPagePool.Reclaimer {
    /** Parent key of a sequence's first page. */
    public static final long ROOT = 0x9E3779B97F4A7C15L;

    /** A cached page: in the pool ({@code page >= 0}) or spilled to the DISK tier ({@code diskSlot >= 0}). */
    private static final class Entry {
        final long parentKey;
        final int[] tokens;
        int page;
        int diskSlot = -1;
        boolean restoring;

        Entry(long parentKey, int[] tokens, int page) {
            this.parentKey = parentKey;
            this.tokens = tokens;
            this.page = page;
        }
    }

    private final KvPagePool pool;
    private final KvDiskStore disk; // null: evicted pages are dropped
    private final LinkedHashMap<Long, Entry> entries = new LinkedHashMap<>(256, 0.75f, true); // access order = LRU first
    private long hitPages;
    private long missPages;
    private long evictedPages;
    private long spilledPages;
    private long restoredPages;

    public PrefixCache(KvPagePool pool) {
        this(pool, null);
    }

    /**
     * A prefix cache over {@code pool} whose evicted pages move to {@code disk} (least recently used first) and
     * come back on a hit; with a full disk the least recently used page there is dropped.
     */
    public PrefixCache(KvPagePool pool, KvDiskStore disk) {
        if (disk != null && disk.pageBytes() != pool.pageBytes()) {
            throw new IllegalArgumentException("disk slots of " + disk.pageBytes() + " bytes for pages of " + pool.pageBytes());
        }
        this.pool = pool;
        this.disk = disk;
        pool.setReclaimer(this);
    }

    /** The key of the page holding {@code tokens[off, off + 16)} after the prefix whose key is {@code parentKey}. */
    public static long key(long parentKey, int[] tokens, int off) {
        long h = parentKey * 0xC2B2AE3D27D4EB4FL + 0x165667B19E3779F9L;
        for (int i = 0; i < KvBlockDescriptor.BLOCK_TOKENS; i++) {
            h = (h ^ (tokens[off + i] & 0xFFFFFFFFL)) * 0x9E3779B97F4A7C15L;
            h ^= h >>> 29;
        }
        h ^= h >>> 32;
        return h == ROOT ? h + 1 : h;
    }

    /** The cached page for the full page {@code tokens[off, off + 16)} after prefix {@code parentKey}, or -1. Counts a hit or a miss. */
    public int lookup(long parentKey, int[] tokens, int off) {
        long key = key(parentKey, tokens, off);
        synchronized (pool) {
            Entry e = entries.get(key);
            if (e != null && e.parentKey == parentKey
                    && Arrays.equals(e.tokens, 0, KvBlockDescriptor.BLOCK_TOKENS, tokens, off, off + KvBlockDescriptor.BLOCK_TOKENS)
                    && (e.page >= 0 || restore(e))) {
                hitPages++;
                return e.page;
            }
            missPages++;
            return -1;
        }
    }

    /**
     * Offers a full page a session has written: kept (one more reference) unless the same prefix is cached
     * already. Returns the page's key, the parent key of the next page.
     */
    public long insert(long parentKey, int[] tokens, int off, int page) {
        long key = key(parentKey, tokens, off);
        synchronized (pool) {
            Entry e = entries.get(key);
            if (e == null) {
                pool.retain(page);
                entries.put(key, new Entry(parentKey, Arrays.copyOfRange(tokens, off, off + KvBlockDescriptor.BLOCK_TOKENS), page));
            } else if (e.page < 0 && !e.restoring && e.parentKey == parentKey
                    && Arrays.equals(e.tokens, 0, KvBlockDescriptor.BLOCK_TOKENS, tokens, off, off + KvBlockDescriptor.BLOCK_TOKENS)) {
                pool.retain(page); // the same bytes are in the pool again: keep those, free the disk slot
                disk.free(e.diskSlot);
                e.diskSlot = -1;
                e.page = page;
            }
        }
        return key;
    }

    /** Brings a spilled page back into the pool; false (a miss) when the pool has no page for it. */
    private boolean restore(Entry e) {
        e.restoring = true; // its slot must not be dropped to make room while it comes back
        try {
            int page = pool.allocate();
            pool.readPage(page, disk.segment(), disk.slotOffsetBytes(e.diskSlot));
            disk.free(e.diskSlot);
            e.diskSlot = -1;
            e.page = page; // the cache's reference
            restoredPages++;
            return true;
        } catch (dev.lockstep.memory.KvPoolExhaustedException full) {
            return false;
        } finally {
            e.restoring = false;
        }
    }

    /**
     * Gives back up to {@code pages} pool pages that no session holds, least recently used first: spilled to the
     * DISK tier when there is one (dropping its least recently used page when it is full), else dropped.
     */
    @Override
    public int reclaim(int pages) {
        synchronized (pool) {
            int released = 0;
            while (released < pages) {
                Entry victim = null;
                Long victimKey = null;
                for (Map.Entry<Long, Entry> me : entries.entrySet()) {
                    Entry e = me.getValue();
                    if (e.page >= 0 && pool.refCount(e.page) == 1) {
                        victim = e;
                        victimKey = me.getKey();
                        break;
                    }
                }
                if (victim == null) {
                    break;
                }
                int slot = disk == null ? -1 : disk.allocate();
                if (disk != null && slot < 0 && dropOldestSpilled()) {
                    slot = disk.allocate();
                }
                if (slot >= 0) {
                    pool.writePage(victim.page, disk.segment(), disk.slotOffsetBytes(slot));
                    victim.diskSlot = slot;
                    spilledPages++;
                } else {
                    entries.remove(victimKey);
                    evictedPages++;
                }
                pool.release(victim.page);
                victim.page = -1;
                released++;
            }
            return released;
        }
    }

    /** Drops the least recently used page on disk; false when there is none to drop. */
    private boolean dropOldestSpilled() {
        Iterator<Map.Entry<Long, Entry>> it = entries.entrySet().iterator();
        while (it.hasNext()) {
            Entry e = it.next().getValue();
            if (e.diskSlot >= 0 && !e.restoring) {
                it.remove();
                disk.free(e.diskSlot);
                evictedPages++;
                return true;
            }
        }
        return false;
    }

    /** Drops every entry, giving back the pages and disk slots only the cache held. */
    public void clear() {
        synchronized (pool) {
            for (Entry e : entries.values()) {
                if (e.page >= 0) {
                    pool.release(e.page);
                }
                if (e.diskSlot >= 0) {
                    disk.free(e.diskSlot);
                }
            }
            entries.clear();
        }
    }

    /** Pages moved to the DISK tier so far. */
    public long spilledPages() {
        synchronized (pool) {
            return spilledPages;
        }
    }

    /** Pages brought back from the DISK tier on a hit so far. */
    public long restoredPages() {
        synchronized (pool) {
            return restoredPages;
        }
    }



    /** Pages the cache holds in memory now (each is in the pool's used count until evicted or reclaimed). */
    public int pages() {
        synchronized (pool) {
            return entries.size();
        }
    }

    public long hitPages() {
        synchronized (pool) {
            return hitPages;
        }
    }

    public long missPages() {
        synchronized (pool) {
            return missPages;
        }
    }

    public long evictedPages() {
        synchronized (pool) {
            return evictedPages;
        }
    }
}
