package dev.lockstep.moe.kv;

import java.lang.foreign.MemorySegment;

/**
 * Keys and values of one sequence, in blocks of {@link dev.lockstep.memory.KvBlockDescriptor#BLOCK_TOKENS}
 * positions per layer laid out as {@link dev.lockstep.memory.KvBlockDescriptor} says (keys transposed,
 * values by position). A forward writes positions {@code [length(), length() + n)} in every layer, then
 * {@link #commit}s them.
 *
 * <p>Blocks are addressed as (segment, byte offset), so an implementation may keep each block anywhere
 * ({@link PagedKvCache}, the one implementation, puts each block in a page of a shared pool). Callers must not
 * assume two blocks are adjacent.
 */
public interface KvCache extends AutoCloseable {
    int layers();

    /** Each layer's key and value shapes. */
    dev.lockstep.memory.KvLayout layout();

    /** KV heads of layer 0 (a uniform grouped-query cache); per-layer shapes are {@link #layout()}'s. */
    int kvHeads();

    /** Head size of layer 0's keys (a uniform grouped-query cache). */
    int headDim();

    /** Positions committed so far. */
    int length();

    int capacityTokens();

    /** Checks that {@code n} more positions fit; throws naming the capacity when not. */
    void reserve(int n);

    MemorySegment keyBlock(int layer, int block);

    long keyBlockOffsetBytes(int layer, int block);

    MemorySegment valueBlock(int layer, int block);

    long valueBlockOffsetBytes(int layer, int block);

    /** Makes {@code n} more positions (already written in every layer) part of the sequence. */
    void commit(int n);

    /** Forgets positions {@code [length, length())}: rollback to a shorter prefix. */
    void truncate(int length);

    /** True once closed (a closed cache's session has ended; its blocks are gone). */
    boolean isClosed();

    @Override
    void close();
}
