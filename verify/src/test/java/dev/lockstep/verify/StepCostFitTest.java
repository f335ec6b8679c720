package dev.lockstep.verify;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.SamplingParams;
import dev.lockstep.engine.Session;
import dev.lockstep.engine.StepCostFit;
import dev.lockstep.engine.StopCondition;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The step listener sees what each scheduler step carries, and {@link StepCostFit} (behind {@code bench agentic}'s
 * "where the token p99/p50 comes from" line) recovers a cost model and splits a spread into the part the steps'
 * composition explains and the part it does not.
 */
class StepCostFitTest {
    private static final double[] COSTS = {150, 80, 0.15, 45, 0.05}; // us: step, decode token, position, prefill token, position

    private static long nanos(double[] c, int dec, long decPos, int pre, long prePos, double noise) {
        return Math.round((c[0] + c[1] * dec + c[2] * decPos + c[3] * pre + c[4] * prePos) * noise * 1e3);
    }

    @Test
    void recoversTheCostsOfStepsThatFollowTheModel() {
        StepCostFit fit = new StepCostFit();
        SplittableRandom r = new SplittableRandom(3);
        for (int s = 0; s < 400; s++) {
            int dec = r.nextInt(0, 25), pre = r.nextInt(0, 64);
            long decPos = dec * (long) r.nextInt(100, 2000), prePos = pre * (long) r.nextInt(0, 2000);
            fit.onStep(dec, decPos, pre, prePos, dec + 1, nanos(COSTS, dec, decPos, pre, prePos, 1));
        }
        double[] c = fit.fit();
        assertArrayEquals(COSTS, c, 1e-3);
        StepCostFit.Result result = fit.explain(c);
        assertEquals(result.timeSpread(), result.costSpread(), 1e-6, "every step follows the model: its spread is all composition");
        assertArrayEquals(new double[] {1, 1, 1}, result.leftOver(), 1e-6);
    }

    @Test
    void aStepThatTakesLongerThanItsCompositionShowsAsLeftOver() {
        StepCostFit fit = new StepCostFit();
        for (int s = 0; s < 200; s++) {
            // the same composition every step; every tenth step twice as slow
            fit.onStep(8, 8_000, 24, 24_000, 9, nanos(COSTS, 8, 8_000, 24, 24_000, s % 10 == 0 ? 2 : 1));
        }
        StepCostFit.Result result = fit.explain(COSTS);
        assertEquals(1, result.costSpread(), 1e-9, "no composition spread");
        assertEquals(2, result.timeSpread(), 1e-9);
        assertEquals(1, result.leftOver()[0], 1e-9);
        assertEquals(2, result.leftOver()[2], 1e-9);
        assertTrue(result.describe().contains("time/modelled p50 1.00 p90 1.00 p99 2.00"), result.describe());
    }

    @Test
    void writesEveryStepAsACsvRow() throws java.io.IOException {
        StepCostFit fit = new StepCostFit();
        fit.onStep(3, 300, 16, 1_000, 4, 2_500_000);
        fit.onStep(0, 0, 64, 2_016, 1, 9_333_600);
        StringBuilder csv = new StringBuilder();
        fit.writeCsv(csv, "cache on");
        assertEquals("run,step,decode_tokens,decode_context_positions,prefill_tokens,prefill_attend_positions,sequences,step_us",
                StepCostFit.CSV_HEADER);
        assertEquals("cache on,0,3,300,16,1000,4,2500.0" + System.lineSeparator() + "cache on,1,0,0,64,2016,1,9333.6" + System.lineSeparator(),
                csv.toString());
    }

    @Test
    void noCoefficientComesOutNegative() {
        StepCostFit fit = new StepCostFit();
        SplittableRandom r = new SplittableRandom(5);
        for (int s = 0; s < 300; s++) {
            int dec = r.nextInt(1, 25);
            // steps get slightly faster with more decode tokens (noise in a real run): the fit drops that term
            fit.onStep(dec, dec * 1000L, 0, 0, dec, Math.round((3000 - 5.0 * dec + 0.2 * dec * 1000) * 1e3));
        }
        for (double c : fit.fit()) {
            assertTrue(c >= 0, "coefficient " + c);
        }
    }

    @Test
    void aListenerThatThrowsIsRemovedAndGenerationGoesOn() {
        try (Engine engine = Engine.load(Golden.bundledModel(), new EngineOptions(1))) {
            int[] calls = new int[1];
            engine.stepListener((dec, decPos, pre, prePos, seqs, ns) -> {
                calls[0]++;
                throw new IllegalStateException("listener bug");
            });
            int[] got = new int[1];
            try (Session s = engine.newSession(64)) {
                s.generate(Golden.randomTokens(8, 10, engine.model().vocabSize()), 4, SamplingParams.GREEDY, StopCondition.IGNORE_EOS,
                        (id, text) -> got[0] += id >= 0 ? 1 : 0);
            }
            assertEquals(4, got[0], "every token arrives");
            assertEquals(1, calls[0], "called once, then removed");
        }
    }

    @Test
    void theListenerSeesWhatEachStepCarries() {
        List<long[]> steps = java.util.Collections.synchronizedList(new ArrayList<>());
        try (Engine engine = Engine.load(Golden.bundledModel(), new EngineOptions(1))) {
            engine.stepListener((dec, decPos, pre, prePos, seqs, ns) -> steps.add(new long[] {dec, decPos, pre, prePos, seqs}));
            try (Session s = engine.newSession(64)) {
                s.generate(Golden.randomTokens(7, 20, engine.model().vocabSize()), 3, SamplingParams.GREEDY, StopCondition.IGNORE_EOS,
                        (id, text) -> { });
            }
        } // closing joins the scheduler's thread: the last step's call has been made
        {
            // the 20-token prompt in one step (positions 0..19 attend over 0..19 positions before them), then two
            // decode steps at contexts 20 and 21 (the third token is sampled from the second step's logits, not fed)
            assertEquals(3, steps.size());
            assertArrayEquals(new long[] {0, 0, 20, 190, 1}, steps.get(0));
            assertArrayEquals(new long[] {1, 20, 0, 0, 1}, steps.get(1));
            assertArrayEquals(new long[] {1, 21, 0, 0, 1}, steps.get(2));
        }
    }
}
