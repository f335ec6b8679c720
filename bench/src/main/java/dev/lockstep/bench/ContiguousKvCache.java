package dev.lockstep.bench;

import dev.lockstep.moe.kv.KvCache;

import dev.lockstep.memory.KvBlockDescriptor;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.memory.TierArena;

import java.lang.foreign.MemorySegment;

/**
 * The baseline for KvLayoutAB only (the engine has one KV implementation, the paged one): the cache Lockstep had
 * before paging. The simplest cache: per layer one off-heap region of {@code ceil(capacity / 16)} key blocks and one of
 * value blocks, allocated up front from an HBM-tier arena.
 *
 * <pre>
 *   keys[layer]:   | block 0: [kvHead][d][16] | block 1 | ... |
 *   values[layer]: | block 0: [16][kvHead][d] | block 1 | ... |
 * </pre>
 */
final class ContiguousKvCache implements KvCache {
    private boolean closed;
    private static final long ALIGNMENT_BYTES = 64;

    private final int layers;
    private final int kvHeads;
    private final int headDim;
    private final int capacityTokens;
    private final long blockBytes;
    private final TierArena arena;
    private final MemorySegment[] keys;
    private final MemorySegment[] values;
    private int length;

    public ContiguousKvCache(int layers, int kvHeads, int headDim, int capacityTokens) {
        if (layers <= 0 || kvHeads <= 0 || headDim <= 0 || capacityTokens <= 0) {
            throw new IllegalArgumentException("layers, kvHeads, headDim and capacityTokens must be positive: "
                    + layers + ", " + kvHeads + ", " + headDim + ", " + capacityTokens);
        }
        this.layers = layers;
        this.kvHeads = kvHeads;
        this.headDim = headDim;
        this.capacityTokens = capacityTokens;
        this.blockBytes = KvBlockDescriptor.blockBytes(kvHeads, headDim);
        long perLayer = blockBytes * KvBlockDescriptor.blocksFor(capacityTokens);
        this.arena = new TierArena(MemoryTier.HBM, 2L * layers * (perLayer + ALIGNMENT_BYTES));
        this.keys = new MemorySegment[layers];
        this.values = new MemorySegment[layers];
        for (int l = 0; l < layers; l++) {
            keys[l] = arena.allocate("keys of layer " + l, perLayer, ALIGNMENT_BYTES);
            values[l] = arena.allocate("values of layer " + l, perLayer, ALIGNMENT_BYTES);
        }
    }

    @Override
    public int layers() {
        return layers;
    }

    @Override
    public dev.lockstep.memory.KvLayout layout() {
        return dev.lockstep.memory.KvLayout.uniform(layers, kvHeads, headDim);
    }

    @Override
    public int kvHeads() {
        return kvHeads;
    }

    @Override
    public int headDim() {
        return headDim;
    }

    @Override
    public int length() {
        return length;
    }

    @Override
    public int capacityTokens() {
        return capacityTokens;
    }

    @Override
    public void reserve(int n) {
        if (n < 0 || (long) length + n > capacityTokens) {
            throw new LockstepException("KV cache full: " + length + " positions held, " + n + " more requested, capacity "
                    + capacityTokens + " (raise the context size)");
        }
    }

    @Override
    public MemorySegment keyBlock(int layer, int block) {
        return keys[layer];
    }

    @Override
    public long keyBlockOffsetBytes(int layer, int block) {
        return block * blockBytes;
    }

    @Override
    public MemorySegment valueBlock(int layer, int block) {
        return values[layer];
    }

    @Override
    public long valueBlockOffsetBytes(int layer, int block) {
        return block * blockBytes;
    }

    @Override
    public void commit(int n) {
        reserve(n);
        length += n;
    }

    @Override
    public void truncate(int newLength) {
        if (newLength < 0 || newLength > length) {
            throw new IllegalArgumentException("cannot truncate a " + length + "-position cache to " + newLength);
        }
        length = newLength;
    }

    @Override
    public boolean isClosed() {
        return closed;
    }

    @Override
    public void close() {
        closed = true;
        arena.close();
    }
}
