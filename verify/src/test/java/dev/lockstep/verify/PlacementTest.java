package dev.lockstep.verify;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.memory.TierPlacement;
import dev.lockstep.memory.TierPlacement.Role;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.LoadOptions;
import dev.lockstep.moe.ModelFamilies;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The placement plan: hot tensors in SRAM while they fit, the rest in HBM, refusals naming the tier; same bits. */
class PlacementTest {
    static CausalLm load(WorkerPool pool, long sram, long hbm) {
        return ModelFamilies.load(ModelFamilies.readConfig(Golden.bundledModel()), KernelProvider.get(), pool,
                LoadOptions.DEFAULT.withTiers(sram, hbm));
    }

    @Test
    void rolesFromCheckpointNames() {
        assertEquals(Role.ROUTER, Role.of("model.layers.3.mlp.gate.weight BF16 x16"));
        assertEquals(Role.EXPERT, Role.of("model.layers.3.mlp.experts.7.gate_proj.weight"));
        assertEquals(Role.ATTENTION, Role.of("model.layers.0.self_attn.q_proj.weight NVFP4 x16"));
        assertEquals(Role.MLP, Role.of("model.layers.1.mlp.down_proj.weight"));
        assertEquals(Role.EMBEDDING, Role.of("model.embed_tokens.weight BF16 row-major"));
        assertEquals(Role.LM_HEAD, Role.of("lm_head.weight"));
    }

    @Test
    void hotTensorsFillSramInOrderAndTheBitsDoNotDependOnThePlan() {
        int[] tokens = DecodeConsistencyTest.tokens(20);
        try (WorkerPool pool = new WorkerPool(2);
             CausalLm roomy = load(pool, 64L << 20, -1);
             CausalLm tight = load(pool, 1L << 20, -1);
             CausalLm none = load(pool, 0, -1)) {
            for (TierPlacement.Decision d : roomy.placement().decisions()) {
                assertEquals(d.role().hot() ? MemoryTier.SRAM : MemoryTier.HBM, d.tier(), d.tensor());
            }
            TierPlacement p = tight.placement();
            assertTrue(p.usedBytes(MemoryTier.SRAM) <= 1L << 20);
            assertTrue(p.decisions().stream().filter(d -> d.role() == Role.ROUTER).allMatch(d -> d.tier() == MemoryTier.SRAM),
                    "the routers (small) fit");
            assertTrue(p.decisions().stream().anyMatch(d -> d.role() == Role.ATTENTION && d.tier() == MemoryTier.HBM
                    && d.why().contains("no longer fits")), "some attention did not fit, and says why");
            assertEquals(0, none.placement().usedBytes(MemoryTier.SRAM));
            float[] a = DecodeConsistencyTest.logitsInBlocks(roomy, tokens, tokens.length);
            assertArrayEquals(a, DecodeConsistencyTest.logitsInBlocks(tight, tokens, tokens.length));
            assertArrayEquals(a, DecodeConsistencyTest.logitsInBlocks(none, tokens, tokens.length));
        }
    }

    @Test
    void aModelTooLargeForHbmOrAPoolTooLargeForWhatIsLeftIsRefused() {
        try (WorkerPool pool = new WorkerPool(1)) {
            LockstepException e = assertThrows(LockstepException.class, () -> load(pool, 0, 10L << 20).close());
            assertTrue(e.getMessage().contains("HBM tier: cannot allocate") && e.getMessage().contains("--hbm"), e.getMessage());
        }
        EngineOptions options = new EngineOptions(1).withLoad(LoadOptions.DEFAULT.withTiers(0, 30L << 20)).withKvCacheBytes(64L << 20);
        LockstepException e = assertThrows(LockstepException.class, () -> Engine.load(Golden.bundledModel(), options).close());
        assertTrue(e.getMessage().contains("HBM tier: the KV page pool needs") && e.getMessage().contains("--kv-memory"), e.getMessage());
    }

    /**
     * A load that maps the packed-weights cache keeps every tensor in the mapping, hot ones too: weights in two
     * kinds of segment made the kernels' call sites bimorphic and cost NVFP4 decode a third (BENCHMARKS.md).
     */
    @Test
    void aMappedCacheKeepsEveryTensorInTheMapping(@org.junit.jupiter.api.io.TempDir java.nio.file.Path cache) {
        LoadOptions options = LoadOptions.DEFAULT.withCache(cache);
        try (WorkerPool pool = new WorkerPool(1)) {
            ModelFamilies.load(ModelFamilies.readConfig(Golden.bundledModel()), KernelProvider.get(), pool, options).close(); // writes
            try (CausalLm mapped = ModelFamilies.load(ModelFamilies.readConfig(Golden.bundledModel()), KernelProvider.get(), pool, options)) {
                assertTrue(mapped.summary().packedCache().startsWith("mapped"), mapped.summary().packedCache());
                assertEquals(0, mapped.placement().usedBytes(MemoryTier.SRAM));
                assertTrue(mapped.placement().decisions().stream().allMatch(d -> d.tier() == MemoryTier.HBM && d.why().contains("mapped")));
            }
        }
    }
}
