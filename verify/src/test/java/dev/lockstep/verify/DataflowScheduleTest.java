package dev.lockstep.verify;

import dev.lockstep.interconnect.schedule.MessageSpec;
import dev.lockstep.interconnect.schedule.RegionTask;
import dev.lockstep.interconnect.schedule.Schedule;
import dev.lockstep.interconnect.schedule.ScheduleCompiler;
import dev.lockstep.interconnect.schedule.ScheduleException;
import dev.lockstep.interconnect.schedule.ScheduleExecutor;
import dev.lockstep.interconnect.schedule.ScheduleVerifier;
import dev.lockstep.interconnect.schedule.StepGraph;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Dependency-driven schedules ({@link StepGraph#flow}): regions declare the messages they consume and produce, the
 * compiler orders each worker's parts by those flows alone (so two micro-batches ping-pong between an "attention"
 * worker and an "FFN" worker), the verifier checks the declared dependencies and proves the programs deadlock-free
 * for the links' capacity, and the executor runs such a step with no driver ({@link ScheduleExecutor#runStep}).
 */
class DataflowScheduleTest {
    static final int LAYERS = 3;

    /**
     * Micro-batches A and B of {@code floats} floats: per layer, worker 0's segment of each (adds its layer number to
     * every value) feeds worker 1's part of it (doubles every value), whose output the next segment consumes.
     */
    static final class PingPong {
        final StepGraph g = new StepGraph(2);
        final RegionTask[] tasks;
        final float[][] lane = new float[2][];   // on worker 0
        final float[] inbox;                        // on worker 1
        final int floats;
        int failAt = -1;

        PingPong(int floats) {
            this.floats = floats;
            lane[0] = new float[floats];
            lane[1] = new float[floats];
            inbox = new float[floats];
            java.util.List<RegionTask> t = new java.util.ArrayList<>();
            t.add((RegionTask.Doorbells) (w, s) -> {
            });
            int[] ffn = new int[2];
            for (int k = 0; k <= LAYERS; k++) {
                for (int b = 0; b < 2; b++) {
                    int seg = g.region("seg " + k + (b == 0 ? "A" : "B"));
                    g.part(seg, 0, StepGraph.NO_WEIGHTS);
                    t.add(new Seg(k, b));
                    if (k > 0) {
                        g.flow("out " + (k - 1) + (b == 0 ? "A" : "B"), ffn[b], 1, seg, 0, floats);
                    }
                    if (k < LAYERS) {
                        ffn[b] = g.region("ffn " + k + (b == 0 ? "A" : "B"));
                        g.part(ffn[b], 1, StepGraph.NO_WEIGHTS);
                        t.add(new Ffn(b));
                        g.flow("tokens " + k + (b == 0 ? "A" : "B"), seg, 0, ffn[b], 1, floats);
                    }
                }
            }
            tasks = t.toArray(new RegionTask[0]);
        }

        final class Seg implements RegionTask {
            final int k, b;

            Seg(int k, int b) {
                this.k = k;
                this.b = b;
            }

            @Override
            public void compute(int worker, long stamp) {
                if (k == failAt) {
                    throw new IllegalStateException("segment " + k + " failed on purpose");
                }
                for (int i = 0; i < floats; i++) {
                    lane[b][i] += k;
                }
            }

            @Override
            public int payloadFloats(MessageSpec m) {
                return floats;
            }

            @Override
            public void write(MessageSpec m, int off, MemorySegment dst, long dstOff, int n) {
                MemorySegment.copy(lane[b], off, dst, ValueLayout.JAVA_FLOAT, dstOff, n);
            }

            @Override
            public void read(MessageSpec m, int off, MemorySegment src, long srcOff, int n, int total) {
                MemorySegment.copy(src, ValueLayout.JAVA_FLOAT, srcOff, inbox, off, n);
            }
        }

        final class Ffn implements RegionTask {
            final int b;

            Ffn(int b) {
                this.b = b;
            }

            @Override
            public void compute(int worker, long stamp) {
                for (int i = 0; i < floats; i++) {
                    inbox[i] *= 2;
                }
            }

            @Override
            public int payloadFloats(MessageSpec m) {
                return floats;
            }

            @Override
            public void write(MessageSpec m, int off, MemorySegment dst, long dstOff, int n) {
                MemorySegment.copy(inbox, off, dst, ValueLayout.JAVA_FLOAT, dstOff, n);
            }

            @Override
            public void read(MessageSpec m, int off, MemorySegment src, long srcOff, int n, int total) {
                MemorySegment.copy(src, ValueLayout.JAVA_FLOAT, srcOff, lane[b], off, n);
            }
        }

        /** What a step leaves in a lane that started at {@code x}. */
        static float expected(float x) {
            for (int k = 0; k < LAYERS; k++) {
                x = 2 * (x + k);
            }
            return x + LAYERS;
        }
    }

    private static int index(Schedule s, int worker, String op) {
        for (int i = 0; i < s.ops(worker); i++) {
            if (s.describe(worker, i).startsWith(op)) {
                return i;
            }
        }
        throw new AssertionError(op + " not in\n" + s.listing());
    }

    @Test
    void theCompilerOrdersByFlowsSoMicroBatchesPingPong() {
        Schedule s = ScheduleCompiler.compile(new PingPong(80).g, 64);
        ScheduleVerifier.verify(s);
        // worker 0 computes B's segment while worker 1 runs A's part: before it receives A's output
        assertTrue(index(s, 0, "COMPUTE seg 0B") < index(s, 0, "RECV out 0A"), s.listing());
        // and worker 1 runs B's part while worker 0 computes A's next segment
        assertTrue(index(s, 1, "COMPUTE ffn 0B") < index(s, 1, "RECV tokens 1A"), s.listing());
        // each part waits only for what it declares: seg 1A needs out 0A, not B's
        assertTrue(index(s, 0, "COMPUTE seg 1A") < index(s, 0, "RECV out 0B"), s.listing());
    }

    @Test
    void theExecutorRunsDataflowStepsWithoutADriver() {
        try (ScheduleExecutor ex = new ScheduleExecutor(2, 64, 4, false, ScheduleExecutor::defaultIdle)) {
            Random rnd = new Random(3);
            for (int floats : new int[] {1, 80, 700}) { // one vector, a full one, fragments
                PingPong p = new PingPong(floats);
                Schedule s = ScheduleCompiler.compile(p.g, 64);
                for (int step = 0; step < 20; step++) {
                    float[][] start = new float[2][floats];
                    for (int b = 0; b < 2; b++) {
                        for (int i = 0; i < floats; i++) {
                            start[b][i] = p.lane[b][i] = rnd.nextInt(100);
                        }
                    }
                    ex.runStep(s, p.tasks);
                    for (int b = 0; b < 2; b++) {
                        float[] want = new float[floats];
                        for (int i = 0; i < floats; i++) {
                            want[i] = PingPong.expected(start[b][i]);
                        }
                        assertArrayEquals(want, p.lane[b], floats + " floats, step " + step + ", lane " + b);
                    }
                }
            }
            assertTrue(ex.partsComputed(1) >= 3 * 20 * 2 * LAYERS, "worker 1 ran its parts: " + ex.partsComputed(1));
        }
    }

    @Test
    void aFailingPartFailsItsStepWithItsCauseAndTheNextStepRuns() {
        try (ScheduleExecutor ex = new ScheduleExecutor(2, 64, 4, false, ScheduleExecutor::defaultIdle)) {
            PingPong p = new PingPong(8);
            Schedule s = ScheduleCompiler.compile(p.g, 64);
            p.failAt = 1;
            ScheduleException e = assertThrows(ScheduleException.class, () -> ex.runStep(s, p.tasks));
            assertTrue(e.getCause() instanceof IllegalStateException && e.getMessage().contains("failed on purpose"), e.getMessage());
            p.failAt = -1;
            java.util.Arrays.fill(p.lane[0], 1f);
            java.util.Arrays.fill(p.lane[1], 1f);
            ex.runStep(s, p.tasks);
            assertEquals(PingPong.expected(1f), p.lane[1][7]);
        }
    }

    @Test
    void aStalledFfnWorkerIsNamedAndTheExecutorRefusesMoreSteps() {
        java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
        PingPong p = new PingPong(8);
        RegionTask[] tasks = p.tasks.clone();
        RegionTask ffn = tasks[2]; // ffn 0A, on worker 1
        tasks[2] = new RegionTask() {
            @Override
            public void compute(int worker, long stamp) {
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                ffn.compute(worker, stamp);
            }

            @Override
            public int payloadFloats(MessageSpec m) {
                return ffn.payloadFloats(m);
            }

            @Override
            public void write(MessageSpec m, int off, MemorySegment dst, long dstOff, int n) {
                ffn.write(m, off, dst, dstOff, n);
            }

            @Override
            public void read(MessageSpec m, int off, MemorySegment src, long srcOff, int n, int total) {
                ffn.read(m, off, src, srcOff, n, total);
            }
        };
        Schedule s = ScheduleCompiler.compile(p.g, 64);
        assertTrue(s.graph().regionName(2).equals("ffn 0A"), s.graph().regionName(2));
        try (ScheduleExecutor ex = new ScheduleExecutor(2, 64, 4, false, ScheduleExecutor::defaultIdle)) {
            ex.stallTimeout(java.time.Duration.ofMillis(300));
            ScheduleException e = assertThrows(ScheduleException.class, () -> ex.runStep(s, tasks));
            assertTrue(e.getMessage().contains("worker 1 stalled") && e.getMessage().contains("out 0A"), e.getMessage());
            release.countDown();
            ScheduleException next = assertThrows(ScheduleException.class, () -> ex.runStep(s, p.tasks));
            assertTrue(next.getMessage().contains("broken"), next.getMessage());
        }
    }

    @Test
    void theVerifierChecksDeclaredFlowsOnly() {
        Schedule s = ScheduleCompiler.compile(new PingPong(80).g, 64);
        // worker 1 computes A's part of layer 0 before receiving its tokens: swap the RECV and the COMPUTE
        int recv = index(s, 1, "RECV tokens 0A"), compute = index(s, 1, "COMPUTE ffn 0A");
        int[][] programs = {s.program(0).clone(), s.program(1).clone()};
        int[] tmp = java.util.Arrays.copyOfRange(programs[1], recv * Schedule.OP_INTS, (recv + 1) * Schedule.OP_INTS);
        System.arraycopy(programs[1], compute * Schedule.OP_INTS, programs[1], recv * Schedule.OP_INTS, Schedule.OP_INTS);
        System.arraycopy(tmp, 0, programs[1], compute * Schedule.OP_INTS, Schedule.OP_INTS);
        String why = assertThrows(ScheduleException.class, () -> ScheduleVerifier.verify(new Schedule(s.graph(), programs, 64))).getMessage();
        assertTrue(why.contains("COMPUTE ffn 0A") && why.contains("uses tokens 0A") && why.contains("before its RECV"), why);
    }

    @Test
    void pingPongMessagesThatDoNotFitTheLinksTogetherAreADeadlock() {
        // 14 payload vectors: two fragments that fill an 8-slot ring each; A's output cannot leave worker 1 while worker 0
        // still pushes B's tokens, which worker 1 takes only after sending A's output
        Schedule s = ScheduleCompiler.compile(new PingPong(14 * 80).g, 8);
        String why = assertThrows(ScheduleException.class, () -> ScheduleVerifier.verify(s)).getMessage();
        assertTrue(why.startsWith("possible deadlock"), why);
        ScheduleVerifier.verify(ScheduleCompiler.compile(new PingPong(14 * 80).g, 64)); // room for both: fine
    }

    @Test
    void aFlowMustRunForwardBetweenExistingParts() {
        StepGraph g = new StepGraph(2);
        int a = g.region("a"), b = g.region("b");
        g.part(a, 0, StepGraph.NO_WEIGHTS).part(b, 1, StepGraph.NO_WEIGHTS);
        String back = assertThrows(IllegalArgumentException.class, () -> g.flow("back", b, 1, a, 0, 4)).getMessage();
        assertTrue(back.contains("not after its producer"), back);
        String noPart = assertThrows(IllegalArgumentException.class, () -> g.flow("x", a, 1, b, 0, 4)).getMessage();
        assertTrue(noPart.contains("worker 1 has no part of a"), noPart);
        String mixed = assertThrows(IllegalArgumentException.class, () -> {
            g.flow("ok", a, 0, b, 1, 4);
            g.message("old", b, 1, 0, MessageSpec.Kind.OUTPUT, 4);
            ScheduleCompiler.compile(g, 8);
        }).getMessage();
        assertTrue(mixed.contains("exchanges only flows"), mixed);
    }
}
