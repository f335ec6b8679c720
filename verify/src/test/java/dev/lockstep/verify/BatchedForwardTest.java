package dev.lockstep.verify;

import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.KvPagePool;
import dev.lockstep.memory.KvPoolExhaustedException;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardBatch;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.kv.PagedKvCache;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.Arrays;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The batched forward on paged KV: a sequence's logits are bit-identical whether it runs alone in one block or
 * in chunks batched with 1..32 other sequences at other positions, forked from a parent (copy-on-write), or
 * rolled back and recomputed; and every page goes back to the pool.
 */
class BatchedForwardTest {
    static WorkerPool pool;
    static CausalLm model;
    static int vocab;

    @BeforeAll
    static void load() {
        pool = new WorkerPool(2);
        model = ModelFamilies.load(Golden.bundledModel(), pool);
        vocab = model.vocabSize();
    }

    @AfterAll
    static void close() {
        model.close();
        pool.close();
    }

    static int[] tokens(long seed, int n) {
        return Golden.randomTokens(seed, n, vocab);
    }

    @ParameterizedTest(name = "with {0} batch mates")
    @ValueSource(ints = {1, 3, 8, 32})
    void aSequenceBatchedWithOthersGetsItsSoloLogitsBitForBit(int mates) {
        int[] target = tokens(1, 70);
        float[] solo = DecodeConsistencyTest.logitsInBlocks(model, target, target.length);
        SplittableRandom r = new SplittableRandom(mates);
        try (KvPagePool kv = model.newKvPagePool(MemoryTier.HBM, 4 * (mates + 1) * 8)) {
            PagedKvCache mine = new PagedKvCache(kv, 128);
            PagedKvCache[] others = new PagedKvCache[mates];
            int[][] otherTokens = new int[mates][];
            for (int m = 0; m < mates; m++) {
                others[m] = new PagedKvCache(kv, 128);
                otherTokens[m] = tokens(100 + m, 120);
            }
            ForwardBatch batch = new ForwardBatch(8);
            ForwardState state = model.newState(8);
            float[] logits = new float[(mates + 8) * 8 * vocab];
            float[] got = new float[target.length * vocab];
            int done = 0;
            while (done < target.length) {
                batch.clear();
                // batch mates first, at their own positions, some with logits, some without
                for (int m = 0; m < mates; m++) {
                    int q = batch.addSequence(others[m]);
                    int n = 1 + r.nextInt(4);
                    int at = others[m].length();
                    batch.add(q, otherTokens[m], at, Math.min(n, otherTokens[m].length - at), r.nextBoolean());
                }
                int q = batch.addSequence(mine);
                int n = Math.min(1 + r.nextInt(9), target.length - done);
                int firstRow = batch.logitsRows();
                batch.add(q, target, done, n, dev.lockstep.moe.LogitsMode.ALL);
                model.forward(batch, state, logits, ForwardObserver.NONE);
                System.arraycopy(logits, firstRow * vocab, got, done * vocab, n * vocab);
                done += n;
            }
            assertArrayEquals(solo, got);
            mine.close();
            for (PagedKvCache c : others) {
                c.close();
            }
            assertEquals(0, kv.usedPages(), "every page back in the pool");
        }
    }

    @Test
    void forkSharesPagesAndCopiesOnWrite() {
        int[] a = tokens(2, 40);
        int[] b = Arrays.copyOf(a, 40);
        for (int i = 20; i < 40; i++) {
            b[i] = (a[i] + 1) % vocab;
        }
        float[] soloA = DecodeConsistencyTest.logitsInBlocks(model, a, a.length);
        float[] soloB = DecodeConsistencyTest.logitsInBlocks(model, b, b.length);
        try (KvPagePool kv = model.newKvPagePool(MemoryTier.HBM, 16)) {
            PagedKvCache parent = new PagedKvCache(kv, 64);
            ForwardState state = model.newState(40);
            float[] logits = new float[40 * vocab];
            forward(parent, a, 0, 20, state, logits);
            PagedKvCache child = parent.fork();
            assertEquals(2, kv.usedPages(), "the fork shares both pages");
            assertEquals(2, kv.refCount(parent.page(1)));
            // both write into the shared, partly filled page 1: each gets its own copy
            float[] gotA = new float[40 * vocab], gotB = new float[40 * vocab];
            System.arraycopy(logits, 0, gotA, 0, 20 * vocab);
            System.arraycopy(logits, 0, gotB, 0, 20 * vocab);
            forward(child, b, 20, 20, state, logits);
            System.arraycopy(logits, 0, gotB, 20 * vocab, 20 * vocab);
            forward(parent, a, 20, 20, state, logits);
            System.arraycopy(logits, 0, gotA, 20 * vocab, 20 * vocab);
            assertArrayEquals(soloA, gotA, "parent after the fork");
            assertArrayEquals(soloB, gotB, "child after the fork");
            assertEquals(parent.page(0), child.page(0), "page 0 (full, unwritten) is still shared");
            assertTrue(parent.page(1) != child.page(1), "page 1 was copied on write");
            assertEquals(1, kv.copies());

            // rollback into the shared page 0, then recompute: a copy again, same bits
            parent.truncate(9);
            forward(parent, a, 9, 31, state, logits);
            assertArrayEquals(Arrays.copyOfRange(soloA, 9 * vocab, 40 * vocab), Arrays.copyOf(logits, 31 * vocab));
            assertTrue(parent.page(0) != child.page(0));
            parent.close();
            child.close();
            assertEquals(0, kv.usedPages());
        }
    }

    @Test
    void aFullPoolFailsTheForwardAndCommitsNothing() {
        try (KvPagePool kv = model.newKvPagePool(MemoryTier.HBM, 3)) {
            PagedKvCache a = new PagedKvCache(kv, 256), b = new PagedKvCache(kv, 256);
            ForwardState state = model.newState(40);
            float[] logits = new float[40 * vocab];
            forward(a, tokens(3, 40), 0, 40, state, logits); // 3 pages
            KvPoolExhaustedException e = assertThrows(KvPoolExhaustedException.class,
                    () -> forward(b, tokens(4, 5), 0, 5, state, logits));
            assertTrue(e.getMessage().contains("all 3 pages"), e.getMessage());
            assertEquals(0, b.length());
            assertEquals(40, a.length());
            a.close();
            forward(b, tokens(4, 5), 0, 5, state, logits); // room again
            b.close();
            assertEquals(0, kv.usedPages());
        }
    }

    static void forward(PagedKvCache cache, int[] tokens, int off, int n, ForwardState state, float[] logits) {
        ForwardBatch batch = new ForwardBatch(n);
        batch.add(batch.addSequence(cache), tokens, off, n, dev.lockstep.moe.LogitsMode.ALL);
        model.forward(batch, state, logits, ForwardObserver.NONE);
    }
}
