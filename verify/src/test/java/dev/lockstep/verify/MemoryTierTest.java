package dev.lockstep.verify;

import dev.lockstep.memory.LockstepException;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.memory.TierArena;
import dev.lockstep.moe.kv.PagedKvCache;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class MemoryTierTest {
    @Test
    void arenaAccountsAlignmentAndRefusesPastCapacity() {
        try (TierArena arena = new TierArena(MemoryTier.SRAM, 1024)) {
            MemorySegment a = arena.allocate("a", 500, 64);
            assertEquals(0, a.address() % 64);
            assertEquals(500 + 63, arena.usedBytes(), "worst-case padding is charged");
            for (long i = 0; i < a.byteSize(); i++) {
                assertEquals(0, a.get(java.lang.foreign.ValueLayout.JAVA_BYTE, i), "allocations are zeroed");
            }
            LockstepException e = assertThrows(LockstepException.class, () -> arena.allocate("kv pages", 500, 64));
            assertTrue(e.getMessage().contains("SRAM tier: cannot allocate 500 bytes for kv pages (461 of 1024 bytes left)"), e.getMessage());
            arena.allocate("small", 400, 8);
        }
    }

    @Test
    void kvCacheReservesAndRollsBackWithinItsCapacity() {
        try (PagedKvCache cache = PagedKvCache.standalone(2, 2, 64, 20)) {
            cache.reserve(20);
            cache.commit(17);
            assertEquals(17, cache.length());
            LockstepException full = assertThrows(LockstepException.class, () -> cache.reserve(4));
            assertTrue(full.getMessage().contains("17 positions held, 4 more requested, capacity 20"), full.getMessage());
            cache.truncate(5);
            assertEquals(5, cache.length());
            assertThrows(IllegalArgumentException.class, () -> cache.truncate(6));
            assertEquals(1, cache.mappedBlocks(), "truncation gives back the pages past the end");
            // 20 positions need 2 pages, one slab laid out layer-major: | l0 keys p0 p1 | l0 values p0 p1 | l1 keys | l1 values |
            long block = 16L * 2 * 64 * 4;
            cache.reserve(15);
            assertEquals(4 * block, cache.keyBlockOffsetBytes(1, 0) - cache.keyBlockOffsetBytes(0, 0));
            assertEquals(2 * block, cache.valueBlockOffsetBytes(0, 0) - cache.keyBlockOffsetBytes(0, 0));
            assertEquals(block, cache.keyBlockOffsetBytes(0, 1) - cache.keyBlockOffsetBytes(0, 0));
            assertEquals(cache.keyBlock(0, 0).byteSize(), 2 * 4 * block);
        }
    }
}
