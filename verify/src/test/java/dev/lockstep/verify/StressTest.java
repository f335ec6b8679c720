package dev.lockstep.verify;

import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.ForwardState;
import dev.lockstep.moe.LogitsMode;
import dev.lockstep.moe.ModelFamilies;
import dev.lockstep.moe.kv.KvCache;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

import java.lang.management.ManagementFactory;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Long runs, off by default (they take minutes): {@code ./mvnw -B verify -Dlockstep.stress=true}.
 */
@EnabledIfSystemProperty(named = "lockstep.stress", matches = "true")
class StressTest {
    @Test
    void workerPoolRunsEveryItemOnceOverMillionsOfDispatches() {
        try (WorkerPool pool = new WorkerPool(2)) {
            PoolStress.run(pool, 2_000_000, 11, 16, 200_000);
        }
    }

    @Test
    void steadyStateDecodeAllocatesNothing() {
        var threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        try (WorkerPool pool = new WorkerPool(2); CausalLm model = ModelFamilies.load(Golden.bundledModel(), pool);
             KvCache cache = model.newKvCache(256)) {
            ForwardState state = model.newState(1);
            float[] logits = new float[model.vocabSize()];
            int[] one = {259};
            long deadline = System.nanoTime() + 120_000_000_000L;
            long lastWindow = Long.MAX_VALUE;
            // Windows of 256 decode steps until one allocates nothing (the JIT has settled) or time runs out.
            while (lastWindow != 0 && System.nanoTime() < deadline) {
                cache.truncate(0);
                long before = threads.getTotalThreadAllocatedBytes();
                for (int i = 0; i < 256; i++) {
                    model.forward(one, 0, 1, cache, state, logits, LogitsMode.LAST, ForwardObserver.NONE);
                    one[0] = dev.lockstep.engine.Sampler.argmax(logits, 0, model.vocabSize());
                }
                lastWindow = threads.getTotalThreadAllocatedBytes() - before;
            }
            assertTrue(lastWindow == 0, "256 warm decode steps allocated " + lastWindow + " bytes");
        }
    }
}
