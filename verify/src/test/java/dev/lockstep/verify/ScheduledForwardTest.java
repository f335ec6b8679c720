package dev.lockstep.verify;

import dev.lockstep.interconnect.schedule.Schedule;
import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.KvPagePool;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ExecutionPlan;
import dev.lockstep.moe.ForwardBatch;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LoadOptions;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.kv.PagedKvCache;
import dev.lockstep.moe.decoder.DecoderModel;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The bundled model on compiled schedules: with its experts split over 2, 3 or 4 workers (tokens and expert
 * outputs moving as vectors), or every matrix split by rows, the logits are the fork-join engine's bit for bit —
 * prefill, decode, and a batch of sequences — and greedy decoding gives HF's tokens.
 */
class ScheduledForwardTest {
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

    static CausalLm scheduled(int workers, ExecutionPlan.Placement placement) {
        return ModelFamilies.load(ModelFamilies.readConfig(Golden.bundledModel()), KernelProvider.get(), pool,
                LoadOptions.DEFAULT.withExecution(ExecutionPlan.scheduled(workers, placement, false)));
    }

    @ParameterizedTest(name = "{0} workers, placement {1}")
    @CsvSource({"2, EXPERTS", "4, EXPERTS", "3, EXPERTS", "2, ROWS", "4, ROWS"})
    void logitsAreTheForkJoinEnginesBitForBit(int workers, ExecutionPlan.Placement placement) {
        int[] t = Golden.randomTokens(workers * 31L + placement.ordinal(), 45, reference.vocabSize());
        float[] expected = DecodeConsistencyTest.logitsInBlocks(reference, t, 9);
        float[] expectedDecode = DecodeConsistencyTest.logitsInBlocks(reference, t, 1);
        try (CausalLm model = scheduled(workers, placement)) {
            // each shape twice: the first step of a shape is recorded and compiled, the later ones run the schedule
            assertArrayEquals(expected, DecodeConsistencyTest.logitsInBlocks(model, t, 9), "prefill in blocks of 9, first run");
            assertArrayEquals(expected, DecodeConsistencyTest.logitsInBlocks(model, t, 9), "prefill in blocks of 9, compiled");
            assertArrayEquals(expectedDecode, DecodeConsistencyTest.logitsInBlocks(model, t, 1), "decode, token by token");
            DecoderModel qwen = (DecoderModel) model;
            Schedule decode = qwen.compute().schedule(1, 1);
            assertNotNull(decode, "the decode shape was compiled");
            // batches share the schedule of their bucket: 9 tokens run the one compiled for up to 16
            assertNotNull(qwen.compute().schedule(9, 9));
            assertTrue(qwen.compute().schedule(9, 9) == qwen.compute().schedule(16, 1) && qwen.compute().schedule(12, 3) == qwen.compute().schedule(9, 9),
                    "one schedule per bucket of shapes");
            assertEquals(workers, decode.workers());
            assertTrue(qwen.compute().scheduleExecutor().steps() >= 45, "steps ran on the schedule");
            for (int w = 1; w < workers; w++) {
                // not only the coordinator: every worker computed parts of the steps (regions split by rows, heads, experts)
                assertTrue(qwen.compute().scheduleExecutor().partsComputed(w) > 45, "worker " + w + " computed "
                        + qwen.compute().scheduleExecutor().partsComputed(w) + " parts");
            }
            if (placement == ExecutionPlan.Placement.EXPERTS) {
                assertTrue(decode.listing().contains("moe.l5.tokens"), decode.listing());
                assertTrue(decode.listing().contains("[weights layer 0 experts 0-"), decode.listing());
            }
        }
    }

    @ParameterizedTest(name = "{0} workers, placement {1}")
    @CsvSource({"2, EXPERTS", "4, EXPERTS", "2, ROWS"})
    void batchedSequencesGetTheirSoloLogits(int workers, ExecutionPlan.Placement placement) {
        int vocab = reference.vocabSize();
        int[][] seqs = {Golden.randomTokens(5, 23, vocab), Golden.randomTokens(6, 17, vocab), Golden.randomTokens(7, 30, vocab)};
        try (CausalLm model = scheduled(workers, placement); KvPagePool kv = model.newKvPagePool(MemoryTier.HBM, 64)) {
            PagedKvCache[] caches = {new PagedKvCache(kv, 64), new PagedKvCache(kv, 64), new PagedKvCache(kv, 64)};
            ForwardBatch batch = new ForwardBatch(3);
            ForwardState state = model.newState(16);
            float[] logits = new float[16 * vocab];
            float[][] got = new float[3][];
            for (int q = 0; q < 3; q++) {
                got[q] = new float[seqs[q].length * vocab];
            }
            int[] done = new int[3];
            for (int round = 0; round < 40; round++) {
                batch.clear();
                int rows = 0;
                int[] chunk = new int[3];
                for (int q = 0; q < 3; q++) {
                    chunk[q] = Math.min(1 + (round + q) % 5, seqs[q].length - done[q]);
                    if (chunk[q] > 0) {
                        int s = batch.addSequence(caches[q]);
                        batch.add(s, seqs[q], done[q], chunk[q], dev.lockstep.moe.LogitsMode.ALL);
                    }
                }
                if (batch.size() == 0) {
                    break;
                }
                model.forward(batch, state, logits, ForwardObserver.NONE);
                for (int q = 0; q < 3; q++) {
                    for (int i = 0; i < chunk[q]; i++) {
                        System.arraycopy(logits, rows * vocab, got[q], (done[q] + i) * vocab, vocab);
                        rows++;
                    }
                    done[q] += Math.max(0, chunk[q]);
                }
            }
            for (int q = 0; q < 3; q++) {
                assertArrayEquals(DecodeConsistencyTest.logitsInBlocks(reference, seqs[q], seqs[q].length), got[q], "sequence " + q);
                caches[q].close();
            }
        }
    }

    @ParameterizedTest(name = "{0} workers, placement {1}")
    @CsvSource({"2, EXPERTS", "4, EXPERTS", "2, ROWS"})
    void greedyDecodingGivesHfTokens(int workers, ExecutionPlan.Placement placement) {
        try (CausalLm model = scheduled(workers, placement)) {
            for (String prompt : List.of("p0", "p1")) {
                int[] tokens = Golden.intArray(Golden.json("golden.json").get("prompts").get(prompt));
                int[] expected = Golden.intArray(Golden.json("golden.json").get("greedy").get(prompt));
                assertArrayEquals(expected, Golden.greedy(model, tokens, expected.length), prompt);
            }
        }
    }
}
