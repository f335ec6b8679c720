package dev.lockstep.moe.kv;

import java.lang.foreign.MemorySegment;

/**
 * Keys and values of one sequence, per layer and position, as float32 rows of {@code kvDim}
 * ({@code nKvHeads * headDim}) floats in native byte order. A forward writes rows for positions
 * {@code [length(), length() + n)} in every layer, then {@link #commit}s them.
 *
 * <p>Rows are addressed as (segment, byte offset) so an implementation may scatter positions over pages:
 * the contiguous cache returns one segment per layer, the paged cache (a later issue) the page holding
 * the position. Callers must not assume rows of different positions share a segment.
 */
public interface KvCache extends AutoCloseable {
    int layers();

    /** Floats per row: {@code nKvHeads * headDim}. */
    int kvDim();

    /** Positions committed so far. */
    int length();

    int capacityTokens();

    /** Checks that {@code n} more positions fit; throws naming the capacity when not. */
    void reserve(int n);

    MemorySegment keySegment(int layer, int position);

    long keyOffsetBytes(int layer, int position);

    MemorySegment valueSegment(int layer, int position);

    long valueOffsetBytes(int layer, int position);

    /** Makes {@code n} more positions (already written in every layer) part of the sequence. */
    void commit(int n);

    /** Forgets positions {@code [length, length())}: rollback to a shorter prefix. */
    void truncate(int length);

    @Override
    void close();
}
