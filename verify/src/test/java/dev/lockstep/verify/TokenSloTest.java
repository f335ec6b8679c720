package dev.lockstep.verify;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.Generation;
import dev.lockstep.engine.Session;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * The per-token latency target: with a target far below any step's cost, every step that carries decode tokens takes
 * only the minimum prefill chunk once the cost model is fitted (the report counts the cut steps and the decode-only
 * steps over the target), and the tokens are exactly those of an engine without a target (only the chunking moved).
 */
class TokenSloTest {
    @Test
    void aTargetCutsPrefillChunksAndChangesNoToken() throws Exception {
        List<int[]> with = run(EngineOptions.defaults().withTokenSloNanos(1_000), true);
        List<int[]> without = run(EngineOptions.defaults(), false);
        assertEquals(without.size(), with.size());
        for (int i = 0; i < with.size(); i++) {
            assertArrayEquals(without.get(i), with.get(i), "request " + i);
        }
    }

    private static List<int[]> run(EngineOptions options, boolean target) throws Exception {
        try (Engine engine = Engine.load(Golden.bundledModel(), options)) {
            if (!target) {
                assertNull(engine.tokenSloReport());
            }
            Random random = new Random(3);
            List<int[]> out = new ArrayList<>();
            // waves of decoding sessions with long prompts arriving among them: steps carry decode and prefill together
            for (int wave = 0; wave < 3; wave++) {
                List<Session> sessions = new ArrayList<>();
                List<Generation> gens = new ArrayList<>();
                for (int i = 0; i < 6; i++) {
                    int[] prompt = new int[100 + random.nextInt(300)];
                    for (int k = 0; k < prompt.length; k++) {
                        prompt[k] = 10 + random.nextInt(3000);
                    }
                    Session s = engine.newSession();
                    sessions.add(s);
                    gens.add(s.submit(GenerateRequest.of(prompt, 40).withIgnoreEos(true)));
                    Thread.sleep(2);
                }
                for (Generation g : gens) {
                    out.add(g.await().tokens());
                }
                for (Session s : sessions) {
                    s.close();
                }
            }
            if (target) {
                Engine.TokenSloReport r = engine.tokenSloReport();
                assertEquals(1_000L, r.targetNanos(), "the report is of the target the engine was given");
                assertNotNull(r.coefficientsMicros(), "the cost model was fitted after " + engine.schedulerSteps() + " steps");
                assertTrue(r.prefillCutSteps() > 0, "steps with a prefill chunk cut: " + r.prefillCutSteps());
                assertTrue(r.decodeSteps() > 0 && r.decodeOnlyOverTarget() > 0, "a 1 us target is below every decode-only step: " + r);
            }
            return out;
        }
    }
}
