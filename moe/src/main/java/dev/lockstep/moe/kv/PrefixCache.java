package dev.lockstep.moe.kv;

import dev.lockstep.memory.KvBlockDescriptor;
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
 * recently used first, the pages no session holds (reference count 1). Thread-safe: guarded by the pool's
 * monitor, which the pool holds when it asks for pages back.
 */
public final class PrefixCache implements KvPagePool.Reclaimer {
    /** Parent key of a sequence's first page. */
    public static final long ROOT = 0x9E3779B97F4A7C15L;

    private record Entry(long parentKey, int[] tokens, int page) {
    }

    private final KvPagePool pool;
    private final LinkedHashMap<Long, Entry> entries = new LinkedHashMap<>(256, 0.75f, true); // access order = LRU first
    private long hitPages;
    private long missPages;
    private long evictedPages;

    public PrefixCache(KvPagePool pool) {
        this.pool = pool;
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
                    && Arrays.equals(e.tokens, 0, KvBlockDescriptor.BLOCK_TOKENS, tokens, off, off + KvBlockDescriptor.BLOCK_TOKENS)) {
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
            if (!entries.containsKey(key)) {
                pool.retain(page);
                entries.put(key, new Entry(parentKey, Arrays.copyOfRange(tokens, off, off + KvBlockDescriptor.BLOCK_TOKENS), page));
            }
        }
        return key;
    }

    @Override
    public int reclaim(int pages) {
        synchronized (pool) {
            int released = 0;
            Iterator<Map.Entry<Long, Entry>> it = entries.entrySet().iterator();
            while (released < pages && it.hasNext()) {
                Entry e = it.next().getValue();
                if (pool.refCount(e.page) == 1) {
                    it.remove();
                    pool.release(e.page);
                    released++;
                    evictedPages++;
                }
            }
            return released;
        }
    }

    /** Drops every entry, giving back the pages only the cache held. */
    public void clear() {
        synchronized (pool) {
            for (Entry e : entries.values()) {
                pool.release(e.page);
            }
            entries.clear();
        }
    }

    public int entries() {
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
