package dev.lockstep.verify;

import dev.lockstep.kernels.PanamaKernels;
import dev.lockstep.kernels.ScalarKernels;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.kv.KvCache;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The determinism contract at this stage: decoding token by token with the KV cache gives the same logits
 * as recomputing the whole sequence (the issue asks for 1e-5 relative; the kernels fix every element's
 * operation order, so we assert bit equality), 1 or 3 threads give the same bits as 2, and the scalar
 * reference kernels give the same bits as the Vector API ones.
 */
class DecodeConsistencyTest {
    static int[] tokens(int n) {
        SplittableRandom r = new SplittableRandom(7);
        int[] t = new int[n];
        for (int i = 0; i < n; i++) {
            t[i] = r.nextInt(4096);
        }
        return t;
    }

    /** Logits of every position of {@code tokens}, computed in blocks of {@code block} tokens (1 = pure decode). */
    static float[] logitsInBlocks(CausalLm model, int[] tokens, int block) {
        int vocab = model.vocabSize();
        float[] all = new float[tokens.length * vocab];
        float[] part = new float[block * vocab];
        try (KvCache cache = model.newKvCache(tokens.length)) {
            ForwardState state = model.newState(block);
            for (int s = 0; s < tokens.length; s += block) {
                int n = Math.min(block, tokens.length - s);
                model.forward(tokens, s, n, cache, state, part, LogitsMode.ALL, ForwardObserver.NONE);
                System.arraycopy(part, 0, all, s * vocab, n * vocab);
            }
            assertEquals(tokens.length, cache.length());
        }
        return all;
    }

    @Test
    void decodeEqualsFullRecomputeBitForBit() {
        int[] t = tokens(40);
        try (WorkerPool pool = new WorkerPool(2); CausalLm model = ModelFamilies.load(Golden.bundledModel(), pool)) {
            float[] full = logitsInBlocks(model, t, t.length);
            assertArrayEquals(full, logitsInBlocks(model, t, 1), "token-by-token decode vs one prefill");
            assertArrayEquals(full, logitsInBlocks(model, t, 7), "blocks of 7 vs one prefill");
        }
    }

    @Test
    void threadCountDoesNotChangeLogits() {
        int[] t = tokens(33);
        float[] reference;
        try (WorkerPool pool = new WorkerPool(2); CausalLm model = ModelFamilies.load(Golden.bundledModel(), pool)) {
            reference = logitsInBlocks(model, t, t.length);
        }
        for (int threads : new int[]{1, 3}) {
            try (WorkerPool pool = new WorkerPool(threads); CausalLm model = ModelFamilies.load(Golden.bundledModel(), pool)) {
                assertArrayEquals(reference, logitsInBlocks(model, t, t.length), threads + " threads vs 2");
                assertArrayEquals(reference, logitsInBlocks(model, t, 1), threads + " threads, decode, vs 2 threads prefill");
            }
        }
    }

    @Test
    void rollbackThenReplayGivesTheSameLogits() {
        int[] t = tokens(20);
        try (WorkerPool pool = new WorkerPool(2); CausalLm model = ModelFamilies.load(Golden.bundledModel(), pool);
             KvCache cache = model.newKvCache(t.length)) {
            int vocab = model.vocabSize();
            ForwardState state = model.newState(t.length);
            float[] first = new float[vocab], second = new float[vocab];
            model.forward(t, 0, t.length, cache, state, first, LogitsMode.LAST, ForwardObserver.NONE);
            cache.truncate(12);
            model.forward(t, 12, t.length - 12, cache, state, second, LogitsMode.LAST, ForwardObserver.NONE);
            assertArrayEquals(first, second);
        }
    }

    @Test
    void scalarKernelsGiveTheSameBitsAsVectorKernels() {
        KernelMatrixTest.assumeWidthSupported();
        // Every kernel is defined by a fixed operation order, so the whole forward pass agrees bit for bit
        // between the scalar reference and the Vector API kernels (and hence across vector widths).
        int[] t = tokens(6);
        float[] vector;
        try (WorkerPool pool = new WorkerPool(2); CausalLm model = ModelFamilies.load(Golden.bundledModel(), new PanamaKernels(), pool)) {
            vector = logitsInBlocks(model, t, t.length);
        }
        try (WorkerPool pool = new WorkerPool(2); CausalLm model = ModelFamilies.load(Golden.bundledModel(), new ScalarKernels(), pool)) {
            assertArrayEquals(vector, logitsInBlocks(model, t, t.length), "scalar reference vs Vector API");
        }
    }

    /** The same for every family's blocks (MLA's latent attention, sinks and windows, biases, MXFP4): 40 tokens, decode. */
    @org.junit.jupiter.params.ParameterizedTest(name = "{0}")
    @org.junit.jupiter.params.provider.ValueSource(strings = {"mixtral", "qwen2_moe", "olmoe", "granitemoe", "gpt_oss", "gpt_oss-mxfp4", "deepseek_v3"})
    void scalarKernelsGiveTheSameBitsAsVectorKernelsForEveryFamily(String family) {
        KernelMatrixTest.assumeWidthSupported();
        int[] t = Golden.randomTokens(family.hashCode(), 40, 4096);
        float[] vector;
        try (WorkerPool pool = new WorkerPool(2); CausalLm model = ModelFamilies.load(FamilyGoldenTest.tiny(family), new PanamaKernels(), pool)) {
            vector = logitsInBlocks(model, t, 1);
        }
        try (WorkerPool pool = new WorkerPool(2); CausalLm model = ModelFamilies.load(FamilyGoldenTest.tiny(family), new ScalarKernels(), pool)) {
            assertArrayEquals(vector, logitsInBlocks(model, t, 1), family + ": scalar reference vs Vector API");
        }
    }
}
