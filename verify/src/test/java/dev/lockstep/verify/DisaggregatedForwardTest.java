package dev.lockstep.verify;

import dev.lockstep.interconnect.schedule.Schedule;
import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.KvPagePool;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.DisaggregationStats;
import dev.lockstep.moe.ExecutionPlan;
import dev.lockstep.moe.ForwardBatch;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LoadOptions;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.kv.PagedKvCache;
import dev.lockstep.moe.decoder.DecoderModel;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Attention-FFN disaggregation ({@link ExecutionPlan#disaggregated}): attention workers own sessions, FFN workers
 * own experts, tokens and expert outputs cross as 320-byte vectors on a dependency-driven schedule with two
 * micro-batches per attention worker. The logits are the colocated engine's bit for bit — one session's prefill and
 * decode, and 1..16 sessions stepping together in uneven chunks — for A/F = 1/1, 1/2, 2/1, 2/2, and the experts ran
 * on the FFN workers (the attention workers hold no expert weights in any compiled program).
 */
class DisaggregatedForwardTest {
    static WorkerPool pool;
    static CausalLm reference;

    @BeforeAll
    static void load() {
        pool = new WorkerPool(1);
        reference = ModelFamilies.load(Golden.bundledModel(), pool);
    }

    @AfterAll
    static void close() {
        reference.close();
        pool.close();
    }

    static CausalLm disaggregated(Path dir, int attention, int ffn) {
        return ModelFamilies.load(ModelFamilies.readConfig(dir), KernelProvider.get(), pool,
                LoadOptions.DEFAULT.withExecution(ExecutionPlan.disaggregated(attention, ffn, false)));
    }

    @ParameterizedTest(name = "A/F = {0}/{1}")
    @CsvSource({"1, 1", "1, 2", "2, 1", "2, 2"})
    void oneSessionsLogitsAreTheColocatedEnginesBitForBit(int attention, int ffn) {
        int[] t = Golden.randomTokens(attention * 7L + ffn, 40, reference.vocabSize());
        try (CausalLm model = disaggregated(Golden.bundledModel(), attention, ffn)) {
            assertArrayEquals(DecodeConsistencyTest.logitsInBlocks(reference, t, 9), DecodeConsistencyTest.logitsInBlocks(model, t, 9),
                    "prefill in blocks of 9");
            assertArrayEquals(DecodeConsistencyTest.logitsInBlocks(reference, t, 1), DecodeConsistencyTest.logitsInBlocks(model, t, 1),
                    "decode, token by token");
            Schedule decode = model.schedule(1, 1);
            assertNotNull(decode, "the decode shape was compiled");
            assertEquals(attention + ffn, decode.workers());
            expertsOnlyOnFfnWorkers(decode, attention);
            DisaggregationStats st = model.disaggregationStats();
            for (int w = attention; w < attention + ffn; w++) {
                // 6 MoE layers a step: every FFN worker ran its experts' part of every layer of every step
                assertTrue(st.partsComputed()[w] >= 6 * st.steps(), "FFN worker " + w + " ran " + st.partsComputed()[w] + " parts in " + st.steps() + " steps");
                assertTrue(st.vectorsPerToken(0, w) > 0 && st.vectorsPerToken(w, 0) > 0, "tokens went to FFN worker " + w + " and came back");
            }
        }
    }

    /** Every COMPUTE on an attention worker needs no expert weights; every expert group is held by exactly one FFN worker. */
    static void expertsOnlyOnFfnWorkers(Schedule s, int attention) {
        String listing = s.listing();
        for (int w = 0; w < s.workers(); w++) {
            for (int op = 0; op < s.ops(w); op++) {
                String d = s.describe(w, op);
                if (d.startsWith("COMPUTE") && d.contains("experts ")) {
                    assertTrue(w >= attention, "attention worker " + w + " computes experts: " + d + "\n" + listing);
                }
            }
        }
        assertTrue(listing.contains("[weights layer 5 experts "), listing);
    }

    @ParameterizedTest(name = "A/F = {0}/{1}, {2} sessions")
    @CsvSource({"1, 1, 1", "1, 1, 3", "1, 2, 16", "2, 1, 5", "2, 2, 16", "2, 2, 2"})
    void concurrentSessionsGetTheirSoloLogits(int attention, int ffn, int sessions) {
        try (CausalLm model = disaggregated(Golden.bundledModel(), attention, ffn)) {
            assertSoloLogits(model, reference, sessions, attention * 100L + ffn * 10L + sessions);
            DisaggregationStats st = model.disaggregationStats();
            if (sessions > attention) {
                assertTrue(st.pingPongSteps() > 0, "two micro-batches ran: " + st);
            }
        }
    }

    /** {@code sessions} sequences stepping together in uneven chunks (1..5 tokens, some sitting out) get the logits they get alone. */
    static void assertSoloLogits(CausalLm model, CausalLm reference, int sessions, long seed) {
        int vocab = reference.vocabSize();
        int[][] seqs = new int[sessions][];
        for (int q = 0; q < sessions; q++) {
            seqs[q] = Golden.randomTokens(seed + q, 12 + (q * 7) % 19, vocab);
        }
        try (KvPagePool kv = model.newKvPagePool(MemoryTier.HBM, 4 * sessions + 4)) {
            PagedKvCache[] caches = new PagedKvCache[sessions];
            for (int q = 0; q < sessions; q++) {
                caches[q] = new PagedKvCache(kv, 64);
            }
            ForwardBatch batch = new ForwardBatch(sessions);
            ForwardState state = model.newState(5 * sessions);
            float[] logits = new float[5 * sessions * vocab];
            float[][] got = new float[sessions][];
            for (int q = 0; q < sessions; q++) {
                got[q] = new float[seqs[q].length * vocab];
            }
            int[] done = new int[sessions];
            int[] chunk = new int[sessions];
            for (int round = 0; round < 60; round++) {
                batch.clear();
                for (int q = 0; q < sessions; q++) {
                    chunk[q] = (round + q) % 7 == 6 ? 0 : Math.min(1 + (round + 2 * q) % 5, seqs[q].length - done[q]);
                    if (chunk[q] > 0) {
                        batch.add(batch.addSequence(caches[q]), seqs[q], done[q], chunk[q], LogitsMode.ALL);
                    }
                }
                if (batch.size() == 0) {
                    if (java.util.stream.IntStream.range(0, sessions).allMatch(q -> done[q] == seqs[q].length)) {
                        break;
                    }
                    continue;
                }
                model.forward(batch, state, logits, ForwardObserver.NONE);
                int rows = 0;
                for (int q = 0; q < sessions; q++) {
                    for (int i = 0; i < chunk[q]; i++) {
                        System.arraycopy(logits, rows++ * vocab, got[q], (done[q] + i) * vocab, vocab);
                    }
                    done[q] += chunk[q];
                }
            }
            for (int q = 0; q < sessions; q++) {
                assertEquals(seqs[q].length, done[q], "sequence " + q + " ran to its end");
                assertArrayEquals(DecodeConsistencyTest.logitsInBlocks(reference, seqs[q], seqs[q].length), got[q], "sequence " + q);
                caches[q].close();
            }
        }
    }

    @Test
    void expertsMoveBetweenFfnWorkersByRoutingCountsAndNoLogitChanges() {
        try (CausalLm model = disaggregated(Golden.bundledModel(), 1, 3)) {
            DecoderModel dm = (DecoderModel) model;
            int[][] even = dm.expertPlacement();
            assertArrayEquals(new int[] {0, 5, 10, 16}, even[0], "16 experts over 3 FFN workers start even");
            assertSoloLogits(model, reference, 6, 41);
            // the routing counts of those steps load the even ranges unevenly: threshold 1.0 moves them
            assertTrue(dm.rebalanceExperts(1.0), "the placement moved");
            int[][] moved = dm.expertPlacement();
            assertFalse(java.util.Arrays.deepEquals(even, moved), "some layer's ranges changed");
            for (int[] layer : moved) {
                for (int f = 0; f < 3; f++) {
                    assertTrue(layer[f] < layer[f + 1], "every FFN worker keeps at least one expert: " + java.util.Arrays.toString(layer));
                }
            }
            assertEquals(1, model.disaggregationStats().expertReplans());
            assertSoloLogits(model, reference, 6, 43); // recompiled for the new ranges, same bits
            assertFalse(dm.rebalanceExperts(1e9), "a placement within the threshold stays");
        }
    }

    @Test
    void aForkedSessionRunsOnItsParentsAttentionWorker() {
        int vocab = reference.vocabSize();
        try (CausalLm model = disaggregated(Golden.bundledModel(), 2, 1); KvPagePool kv = model.newKvPagePool(MemoryTier.HBM, 16)) {
            DecoderModel dm = (DecoderModel) model;
            ForwardState state = model.newState(40);
            float[] logits = new float[40 * vocab];
            int[] prompt = Golden.randomTokens(9, 40, vocab);
            PagedKvCache a = new PagedKvCache(kv, 64), b = new PagedKvCache(kv, 64);
            model.forward(prompt, 0, 40, a, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
            model.forward(prompt, 0, 40, b, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
            int wa = dm.attentionWorkerOf(a), wb = dm.attentionWorkerOf(b);
            assertTrue(wa != wb && wa >= 0 && wb >= 0, "two sessions spread over the two attention workers: " + wa + ", " + wb);
            try (PagedKvCache childOfB = b.fork(); PagedKvCache childOfA = a.fork(); PagedKvCache fresh = new PagedKvCache(kv, 64)) {
                model.forward(new int[] {5}, 0, 1, childOfB, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                model.forward(new int[] {5}, 0, 1, childOfA, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                assertEquals(wb, dm.attentionWorkerOf(childOfB), "b's fork shares b's KV pages: b's worker");
                assertEquals(wa, dm.attentionWorkerOf(childOfA), "a's fork shares a's KV pages: a's worker");
                model.forward(new int[] {5}, 0, 1, fresh, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                assertEquals(0, dm.attentionWorkerOf(fresh), "a session sharing nothing: the least loaded (ties: the lowest)");
                assertEquals(2, model.disaggregationStats().prefixRouted());
            } finally {
                a.close();
                b.close();
            }
        }
    }

    @Test
    void greedyDecodingGivesHfTokens() {
        try (CausalLm model = disaggregated(Golden.bundledModel(), 2, 2)) {
            for (String prompt : List.of("p0", "p1")) {
                int[] tokens = Golden.intArray(Golden.json("golden.json").get("prompts").get(prompt));
                int[] expected = Golden.intArray(Golden.json("golden.json").get("greedy").get(prompt));
                assertArrayEquals(expected, Golden.greedy(model, tokens, expected.length), prompt);
            }
        }
    }

    @Test
    void observersAreRefusedByName() {
        try (CausalLm model = disaggregated(Golden.bundledModel(), 1, 1)) {
            ForwardState state = model.newState(4);
            try (PagedKvCache cache = PagedKvCache.standalone(model.kvLayout(), 16)) {
                UnsupportedOperationException e = assertThrows(UnsupportedOperationException.class, () -> model.forward(new int[] {1, 2}, 0, 2, cache,
                        state, new float[2 * model.vocabSize()], LogitsMode.ALL, new ForwardObserver() {
                        }));
                assertTrue(e.getMessage().contains("colocated"), e.getMessage());
                assertEquals(0, cache.length(), "nothing committed");
            }
        }
    }

    @Test
    void moreFfnWorkersThanExpertsIsRefused() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> disaggregated(Golden.bundledModel(), 1, 17).close());
        assertTrue(e.getMessage().contains("17 FFN workers for 16 experts"), e.getMessage());
        assertFalse(ExecutionPlan.disaggregated(1, 1, false).toString().isEmpty());
    }
}
