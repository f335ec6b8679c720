package dev.lockstep.moe.kv;

import dev.lockstep.memory.LockstepException;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.memory.TierArena;

import java.lang.foreign.MemorySegment;

/**
 * The simplest cache: per layer one off-heap block of {@code capacity x kvDim} floats for keys and one for
 * values, allocated up front from an HBM-tier arena.
 *
 * <pre>
 *   keys[layer]:   | pos 0: kvDim f32 | pos 1: kvDim f32 | ... | pos capacity-1 |
 *   values[layer]: | pos 0: kvDim f32 | ...                                      |
 * </pre>
 */
public final class ContiguousKvCache implements KvCache {
    private static final long ALIGNMENT_BYTES = 64;

    private final int layers;
    private final int kvDim;
    private final int capacityTokens;
    private final long rowBytes;
    private final TierArena arena;
    private final MemorySegment[] keys;
    private final MemorySegment[] values;
    private int length;

    public ContiguousKvCache(int layers, int kvDim, int capacityTokens) {
        if (layers <= 0 || kvDim <= 0 || capacityTokens <= 0) {
            throw new IllegalArgumentException("layers, kvDim and capacityTokens must be positive: " + layers + ", " + kvDim + ", " + capacityTokens);
        }
        this.layers = layers;
        this.kvDim = kvDim;
        this.capacityTokens = capacityTokens;
        this.rowBytes = (long) kvDim * Float.BYTES;
        long perTensor = rowBytes * capacityTokens;
        this.arena = new TierArena(MemoryTier.HBM, 2L * layers * (perTensor + ALIGNMENT_BYTES));
        this.keys = new MemorySegment[layers];
        this.values = new MemorySegment[layers];
        for (int l = 0; l < layers; l++) {
            keys[l] = arena.allocate("keys of layer " + l, perTensor, ALIGNMENT_BYTES);
            values[l] = arena.allocate("values of layer " + l, perTensor, ALIGNMENT_BYTES);
        }
    }

    @Override
    public int layers() {
        return layers;
    }

    @Override
    public int kvDim() {
        return kvDim;
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
    public MemorySegment keySegment(int layer, int position) {
        return keys[layer];
    }

    @Override
    public long keyOffsetBytes(int layer, int position) {
        return position * rowBytes;
    }

    @Override
    public MemorySegment valueSegment(int layer, int position) {
        return values[layer];
    }

    @Override
    public long valueOffsetBytes(int layer, int position) {
        return position * rowBytes;
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
    public void close() {
        arena.close();
    }
}
