package dev.lockstep.verify;

import dev.lockstep.kernels.WorkerPool;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;


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
}
