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
 * The schedule compiler, verifier and executor: a compiled star of messages runs step after step with the
 * right data (fragments, wrap-around, variable sizes); each broken schedule is rejected naming its op; a failing
 * part fails its step, not the executor.
 */
class ScheduleTest {
    /** A scatter/compute/gather step: worker 0 sends each worker a vector of floats, each doubles its share, sends it back. */
    static class Scatter implements RegionTask {
        final int workers;
        final float[][] data; // per worker's private copy
        int n;

        Scatter(int workers, int max) {
            this.workers = workers;
            this.data = new float[workers][max];
        }

        @Override
        public void compute(int worker, long stamp) {
            for (int i = 0; i < n; i++) {
                data[worker][i] = data[worker][i] * 2 + worker;
            }
        }

        @Override
        public int payloadFloats(MessageSpec m) {
            return n;
        }

        @Override
        public void write(MessageSpec m, int off, MemorySegment dst, long dstOff, int floats) {
            float[] src = m.kind() == MessageSpec.Kind.INPUT ? data[0] : data[m.from()];
            MemorySegment.copy(src, off, dst, ValueLayout.JAVA_FLOAT, dstOff, floats);
        }

        @Override
        public void read(MessageSpec m, int off, MemorySegment src, long srcOff, int floats, int total) {
            if (m.kind() == MessageSpec.Kind.INPUT) {
                n = total; // the worker learns the size from the header
                MemorySegment.copy(src, ValueLayout.JAVA_FLOAT, srcOff, data[m.to()], off, floats);
            } else {
                MemorySegment.copy(src, ValueLayout.JAVA_FLOAT, srcOff, results[m.from()], off, floats);
            }
        }

        final float[][] results = new float[8][4096];
    }

    static StepGraph star(int workers, int maxFloats) {
        StepGraph g = new StepGraph(workers);
        int r = g.region("double");
        for (int w = 0; w < workers; w++) {
            g.part(r, w, StepGraph.NO_WEIGHTS);
        }
        for (int w = 1; w < workers; w++) {
            g.message("x->w" + w, r, 0, w, MessageSpec.Kind.INPUT, maxFloats);
        }
        for (int w = 1; w < workers; w++) {
            g.message("y<-w" + w, r, w, 0, MessageSpec.Kind.OUTPUT, maxFloats);
        }
        return g;
    }

    /** {@code steps} scatter steps of random sizes up to {@code max}; every worker's doubled share checked. */
    static void runScatterSteps(ScheduleExecutor ex, Schedule s, int workers, int max, int steps, Random rnd) {
        Scatter task = new Scatter(workers, max);
        for (int step = 0; step < steps; step++) {
            int n = rnd.nextInt(max + 1);
            task.n = n;
            for (int i = 0; i < n; i++) {
                task.data[0][i] = rnd.nextFloat();
            }
            float[] in = task.data[0].clone();
            ex.begin(s);
            ex.region(1, task);
            ex.end();
            for (int w = 1; w < workers; w++) {
                for (int i = 0; i < n; i++) {
                    assertEquals(in[i] * 2 + w, task.results[w][i], "step " + step + " worker " + w + " float " + i);
                }
            }
        }
    }

    @Test
    void compiledStarRunsStepsWithFragmentsAndVariableSizes() {
        int workers = 3, max = 3000; // 38 vectors: 3 fragments on rings of 16
        Schedule s = ScheduleCompiler.compile(star(workers, max), 16);
        ScheduleVerifier.verify(s);
        assertEquals(3, s.fragments(s.graph().messages().get(workers - 1 + 1)));
        Random rnd = new Random(7);
        try (ScheduleExecutor ex = new ScheduleExecutor(workers, 16, 4, false, ScheduleExecutor::defaultIdle)) {
            ex.reserveRegions(s.graph().regions());
            runScatterSteps(ex, s, workers, max, 300, rnd);
            assertEquals(300, ex.steps());
            assertTrue(ex.vectorsSent() > 300 * 4, "vectors sent " + ex.vectorsSent());
            assertEquals(75, ex.driftNs(1).getTotalCount()); // a barrier every 4 steps
        }
    }

    /**
     * The executor, compiler and verifier see links only through {@link Link}: a factory of links with a smaller largest
     * message than their capacity (as a network transport's frame) gives more, smaller fragments, every claim within
     * the limit, and the same results.
     */
    @Test
    void anotherLinkImplementationRunsTheSameStepThroughTheSeam() {
        int workers = 3, max = 3000;
        dev.lockstep.interconnect.LinkParameters params = new dev.lockstep.interconnect.LinkParameters(16, 5);
        Schedule s = ScheduleCompiler.compile(star(workers, max), params);
        ScheduleVerifier.verify(s);
        assertEquals(10, s.fragments(s.graph().messages().get(workers - 1 + 1)), "38 vectors in fragments of 4");
        java.util.concurrent.atomic.AtomicLong claims = new java.util.concurrent.atomic.AtomicLong();
        java.util.concurrent.atomic.AtomicInteger largest = new java.util.concurrent.atomic.AtomicInteger();
        dev.lockstep.interconnect.LinkFactory counting = new dev.lockstep.interconnect.LinkFactory() {
            @Override
            public dev.lockstep.interconnect.LinkParameters parameters() {
                return params;
            }

            @Override
            public dev.lockstep.interconnect.Link open(int from, int to, java.lang.foreign.Arena arena) {
                dev.lockstep.interconnect.VectorRing ring = new dev.lockstep.interconnect.VectorRing(arena, 16);
                return new dev.lockstep.interconnect.Link() {
                    public dev.lockstep.interconnect.LinkParameters parameters() { return params; }
                    public MemorySegment segment() { return ring.segment(); }
                    public long slotOffset(long index) { return ring.slotOffset(index); }
                    public long tryClaim(int n) {
                        claims.incrementAndGet();
                        largest.accumulateAndGet(n, Math::max);
                        return ring.tryClaim(n);
                    }
                    public void commit() { ring.commit(); }
                    public int available() { return ring.available(); }
                    public long readIndex() { return ring.readIndex(); }
                    public void release(int n) { ring.release(n); }
                };
            }
        };
        Random rnd = new Random(9);
        try (ScheduleExecutor ex = new ScheduleExecutor(workers, counting, 4, false, ScheduleExecutor::defaultIdle)) {
            ex.reserveRegions(s.graph().regions());
            runScatterSteps(ex, s, workers, max, 50, rnd);
            assertTrue(claims.get() >= 50 * 4 * 10, "claims through the seam: " + claims.get());
            assertTrue(largest.get() <= 5, "largest claim " + largest.get() + " vectors; the link's largest message is 5");
            Schedule ring = ScheduleCompiler.compile(star(workers, max), 16);
            IllegalArgumentException e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> ex.begin(ring));
            assertTrue(e.getMessage().contains("does not fit this executor"), e.getMessage());
        }
    }

    /** A worker stuck in its part is reported by name after the stall timeout, never waited on forever. */
    @Test
    void aStalledWorkerIsReportedByNameAfterTheStallTimeout() throws Exception {
        int workers = 2, max = 64;
        Schedule s = ScheduleCompiler.compile(star(workers, max), 16);
        java.util.concurrent.CountDownLatch release = new java.util.concurrent.CountDownLatch(1);
        Scatter stuck = new Scatter(workers, max) {
            @Override
            public void compute(int worker, long stamp) {
                if (worker == 1) {
                    try {
                        release.await(); // stuck until the test lets go
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
                super.compute(worker, stamp);
            }
        };
        stuck.n = 8;
        try (ScheduleExecutor ex = new ScheduleExecutor(workers, 16, 1, false, ScheduleExecutor::defaultIdle)) {
            ex.stallTimeout(java.time.Duration.ofMillis(300));
            ex.reserveRegions(s.graph().regions());
            long t0 = System.nanoTime();
            ScheduleException e = org.junit.jupiter.api.Assertions.assertThrows(ScheduleException.class, () -> {
                ex.begin(s);
                ex.region(1, stuck);
                ex.end();
            });
            long waitedMs = (System.nanoTime() - t0) / 1_000_000;
            assertTrue(e.getMessage().contains("worker 1 stalled") && e.getMessage().contains("stall timeout 300 ms"), e.getMessage());
            assertTrue(waitedMs >= 300 && waitedMs < 10_000, "gave up after " + waitedMs + " ms");
            release.countDown();
            ScheduleException next = org.junit.jupiter.api.Assertions.assertThrows(ScheduleException.class, () -> ex.begin(s));
            assertTrue(next.getMessage().contains("broken") && next.getMessage().contains("worker 1 stalled"), next.getMessage());
        }
    }

    @Test
    void aFailingPartFailsItsStepAndTheNextStepRuns() {
        Schedule s = ScheduleCompiler.compile(star(2, 80), 8);
        try (ScheduleExecutor ex = new ScheduleExecutor(2, 8, 1, false, ScheduleExecutor::defaultIdle)) {
            ex.reserveRegions(s.graph().regions());
            Scatter ok = new Scatter(2, 80);
            ok.n = 80;
            RegionTask bad = new Scatter(2, 80) {
                @Override
                public void compute(int worker, long stamp) {
                    if (worker == 1) {
                        throw new IllegalStateException("part of worker 1 broke");
                    }
                }
            };
            ((Scatter) bad).n = 80;
            ex.begin(s);
            ex.region(1, bad);
            ScheduleException e = assertThrows(ScheduleException.class, ex::end);
            assertTrue(e.getMessage().contains("worker 1") && e.getMessage().contains("part of worker 1 broke"), e.getMessage());
            ok.data[0][5] = 3f;
            ex.begin(s);
            ex.region(1, ok);
            ex.end();
            assertEquals(3f * 2 + 1, ok.results[1][5]);
            // a driver that fails mid-step aborts it; the workers finish theirs and the executor stays usable
            ex.begin(s);
            ex.abort();
            ex.begin(s);
            ex.region(1, ok);
            ex.end();
        }
    }

    @Test
    void aDriverThatSkipsARegionIsCaught() {
        StepGraph g = star(2, 80);
        int second = g.region("second");
        g.part(second, 0, StepGraph.NO_WEIGHTS);
        Schedule s = ScheduleCompiler.compile(g, 8);
        try (ScheduleExecutor ex = new ScheduleExecutor(2, 8, 1, false, ScheduleExecutor::defaultIdle)) {
            ex.reserveRegions(g.regions());
            ex.begin(s);
            ScheduleException e = assertThrows(ScheduleException.class, () -> ex.region(second, new Scatter(2, 80)));
            assertTrue(e.getMessage().contains("disagree"), e.getMessage());
            ex.abort();
        }
    }

    /** A region of chunks, one per worker, that the coordinator takes over when their worker has not claimed them. */
    static final class Chunks implements RegionTask.Doorbells {
        final dev.lockstep.interconnect.schedule.PartClaims claims;
        final boolean[] taken;
        final int[] doneBy; // per chunk: who ran it this step (0 or the owner)
        volatile int stallWorker = -1;
        volatile long stallMillis;

        Chunks(int workers) {
            claims = new dev.lockstep.interconnect.schedule.PartClaims(workers);
            taken = new boolean[workers];
            doneBy = new int[workers];
        }

        @Override
        public void compute(int worker, long stamp) {
            if (worker == 0) {
                doneBy[0] = 0;
                for (int w = 1; w < taken.length; w++) {
                    taken[w] = claims.claim(w, stamp);
                    if (taken[w]) {
                        doneBy[w] = 0;
                    }
                }
                return;
            }
            if (worker == stallWorker) {
                stallWorker = -1;
                try {
                    Thread.sleep(stallMillis); // a descheduled vCPU, before the worker could claim its chunk
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            if (claims.claim(worker, stamp)) {
                doneBy[worker] = worker;
            }
        }

        @Override
        public boolean takenOver(MessageSpec m) {
            return taken[m.from()];
        }
    }

    @Test
    void theCoordinatorTakesOverAStalledWorkersChunksAndWaitsForItOnlyAtTheStepsEnd() {
        int workers = 3;
        StepGraph g = new StepGraph(workers);
        for (int k = 0; k < 4; k++) { // four regions a step
            int r = g.region("chunks " + k);
            for (int w = 0; w < workers; w++) {
                g.part(r, w, StepGraph.NO_WEIGHTS);
                if (w > 0) {
                    g.message("go" + k, r, 0, w, MessageSpec.Kind.INPUT, 0);
                    g.message("done" + k, r, w, 0, MessageSpec.Kind.OUTPUT, 0);
                }
            }
        }
        Schedule s = ScheduleCompiler.compile(g, 64);
        try (ScheduleExecutor ex = new ScheduleExecutor(workers, 64, 8, false, ScheduleExecutor::defaultIdle)) {
            ex.reserveRegions(g.regions());
            Chunks chunks = new Chunks(workers);
            for (int step = 0; step < 200; step++) {
                if (step == 50) {
                    chunks.stallMillis = 400;
                    chunks.stallWorker = 2;
                }
                long t0 = System.nanoTime();
                ex.begin(s);
                int takenFromTheStalled = 0;
                long lastRegionNs = 0;
                for (int r = 1; r <= 4; r++) {
                    java.util.Arrays.fill(chunks.doneBy, -1);
                    ex.region(r, chunks);
                    for (int w = 0; w < workers; w++) {
                        assertTrue(chunks.doneBy[w] == 0 || chunks.doneBy[w] == w, "step " + step + " region " + r + " chunk " + w + " ran once");
                    }
                    takenFromTheStalled += chunks.doneBy[2] == 0 ? 1 : 0;
                    lastRegionNs = System.nanoTime() - t0;
                }
                ex.end();
                if (step == 50) {
                    // every region ran on without the stalled worker; the step's end waits for it (the next step may
                    // run another schedule: no worker lags across steps)
                    assertEquals(4, takenFromTheStalled, "the coordinator took the stalled worker's chunk in every region");
                    assertTrue(lastRegionNs < 200_000_000L, "the regions waited " + lastRegionNs / 1_000_000 + " ms for the stalled worker");
                    assertTrue(System.nanoTime() - t0 >= 300_000_000L, "the step's end received what the stalled worker owed");
                }
            }
            assertTrue(ex.deferredReceives() > 0, "the coordinator deferred receives from the stalled worker");
            // every step still ran to its end on every worker: one more step with no stall completes normally
            ex.begin(s);
            for (int r = 1; r <= 4; r++) {
                ex.region(r, chunks);
            }
            ex.end();
        }
    }

    /** A data region the coordinator can take over: worker 1 doubles 80 floats it receives, or the coordinator does. */
    static final class TakeoverPayload implements RegionTask {
        final dev.lockstep.interconnect.schedule.PartClaims claims = new dev.lockstep.interconnect.schedule.PartClaims(2);
        final float[] in = new float[80], workerIn = new float[80], result = new float[80];
        boolean taken;
        int workerRows;
        volatile long stallMillis;

        @Override
        public void compute(int worker, long stamp) {
            if (worker == 0) {
                taken = claims.claim(1, stamp);
                if (taken) {
                    for (int i = 0; i < 80; i++) {
                        result[i] = in[i] * 2;
                    }
                }
                return;
            }
            workerRows = 0;
            if (claims.claim(1, stamp)) {
                for (int i = 0; i < 80; i++) {
                    workerIn[i] = workerIn[i] * 2;
                }
                workerRows = 80;
            }
        }

        @Override
        public boolean takenOver(MessageSpec m) {
            return taken;
        }

        @Override
        public int payloadFloats(MessageSpec m) {
            return m.kind() == MessageSpec.Kind.INPUT ? 80 : workerRows;
        }

        @Override
        public void write(MessageSpec m, int off, MemorySegment dst, long dstOff, int floats) {
            MemorySegment.copy(m.kind() == MessageSpec.Kind.INPUT ? in : workerIn, off, dst, ValueLayout.JAVA_FLOAT, dstOff, floats);
        }

        @Override
        public void read(MessageSpec m, int off, MemorySegment src, long srcOff, int floats, int total) {
            MemorySegment.copy(src, ValueLayout.JAVA_FLOAT, srcOff, m.kind() == MessageSpec.Kind.INPUT ? workerIn : result, off, floats);
        }
    }

    /**
     * A worker late into a step's data region must not meet the next step's task for that region index: a step
     * receives everything it deferred before it ends. (Without that, the late worker gave step A's payload to step
     * B's doorbell task: a failure the model tests saw only under some timings.)
     */
    @Test
    void aLateWorkerNeverMeetsTheNextStepsTasks() {
        StepGraph a = chunksThen("data", 80); // region 2 moves 80 floats each way
        StepGraph b = chunksThen("bells", 0); // region 2 is doorbells only
        Schedule sa = ScheduleCompiler.compile(a, 16), sb = ScheduleCompiler.compile(b, 16);
        try (ScheduleExecutor ex = new ScheduleExecutor(2, 16, 1000, false, ScheduleExecutor::defaultIdle)) {
            ex.reserveRegions(3);
            Chunks chunks = new Chunks(2);
            TakeoverPayload data = new TakeoverPayload();
            Chunks bells = new Chunks(2);
            for (int i = 0; i < 80; i++) {
                data.in[i] = i;
            }
            for (int step = 0; step < 6; step++) {
                if (step == 2) {
                    chunks.stallMillis = 150;
                    chunks.stallWorker = 1; // late in step A's first region, before it receives the data region's payload
                }
                ex.begin(sa);
                ex.region(1, chunks);
                java.util.Arrays.fill(data.result, -1f);
                ex.region(2, data);
                ex.end();
                for (int i = 0; i < 80; i++) {
                    assertEquals(2f * i, data.result[i], "step " + step + " float " + i);
                }
                ex.begin(sb); // another schedule: region 2 is a doorbell task now
                ex.region(1, chunks);
                ex.region(2, bells);
                ex.end();
            }
            assertTrue(ex.deferredReceives() > 0, "the coordinator deferred what the late worker owed");
        }
    }

    /**
     * Two workers, two regions: "chunks" (a doorbell each way), then {@code second}, whose messages carry {@code floats}
     * floats each way (0: doorbells).
     */
    private static StepGraph chunksThen(String second, int floats) {
        StepGraph g = new StepGraph(2);
        int chunks = g.region("chunks");
        int r = g.region(second);
        for (int w = 0; w < 2; w++) {
            g.part(chunks, w, StepGraph.NO_WEIGHTS).part(r, w, StepGraph.NO_WEIGHTS);
        }
        g.message("go", chunks, 0, 1, MessageSpec.Kind.INPUT, 0);
        g.message("done", chunks, 1, 0, MessageSpec.Kind.OUTPUT, 0);
        g.message(second + ".in", r, 0, 1, MessageSpec.Kind.INPUT, floats);
        g.message(second + ".out", r, 1, 0, MessageSpec.Kind.OUTPUT, floats);
        return g;
    }

    @Test
    void aMessageHeaderRoundTripsAndAnythingElseIsNamed() {
        try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
            MemorySegment v = arena.allocate(dev.lockstep.interconnect.VectorDescriptor.VECTOR_BYTES, 64);
            assertEquals("no message header (0x0)", dev.lockstep.interconnect.schedule.MessageDescriptor.describe(v, 0));
            dev.lockstep.interconnect.schedule.MessageDescriptor.writeHeader(v, 0, 12, 3, 161, 1000, 7, true, 1L << 40);
            assertTrue(dev.lockstep.interconnect.schedule.MessageDescriptor.matches(v, 0, 12, 3));
            assertTrue(!dev.lockstep.interconnect.schedule.MessageDescriptor.matches(v, 0, 12, 2));
            assertEquals(161, dev.lockstep.interconnect.schedule.MessageDescriptor.floats(v, 0));
            assertEquals(1000, dev.lockstep.interconnect.schedule.MessageDescriptor.total(v, 0));
            assertEquals(7, dev.lockstep.interconnect.schedule.MessageDescriptor.schedule(v, 0));
            assertTrue(dev.lockstep.interconnect.schedule.MessageDescriptor.aborted(v, 0));
            assertEquals(1L << 40, dev.lockstep.interconnect.schedule.MessageDescriptor.stamp(v, 0));
            assertEquals(4, dev.lockstep.interconnect.schedule.MessageDescriptor.fragmentVectors(161)); // header + 3 payload vectors
            assertEquals("fragment 3 of message 12", dev.lockstep.interconnect.schedule.MessageDescriptor.describe(v, 0));
        }
    }

    // ------------------------------------------------------------------ the verifier rejects, naming the op

    /** Two workers, one region; messages: 1 = x (0 -> 1, input, 160 floats), 2 = y (1 -> 0, output, 160 floats). */
    static StepGraph pair() {
        StepGraph g = new StepGraph(2);
        int r = g.region("work");
        int experts = g.weightGroup("experts 0-7");
        g.owns(0, experts);
        g.part(r, 0, StepGraph.NO_WEIGHTS).part(r, 1, StepGraph.NO_WEIGHTS);
        g.message("x", r, 0, 1, MessageSpec.Kind.INPUT, 160);
        g.message("y", r, 1, 0, MessageSpec.Kind.OUTPUT, 160);
        return g;
    }

    static Schedule.ProgramBuilder start0() {
        return new Schedule.ProgramBuilder().send(0, 0, 0, 0);
    }

    static Schedule.ProgramBuilder start1() {
        return new Schedule.ProgramBuilder().recv(0, 0, 0, 0);
    }

    static String rejection(Schedule s) {
        return assertThrows(ScheduleException.class, () -> ScheduleVerifier.verify(s)).getMessage();
    }

    @Test
    void theCompiledPairVerifies() {
        Schedule good = new Schedule(pair(), new int[][] {
                start0().send(1, 1, 0, 2).compute(1, -1).recv(1, 2, 0, 2).sync(1, 0).build(),
                start1().recv(1, 1, 0, 2).compute(1, -1).send(1, 2, 0, 2).sync(1, 0).build()}, 8);
        ScheduleVerifier.verify(good);
        assertArrayEquals(good.program(0), ScheduleCompiler.compile(pair(), 8).program(0));
        assertArrayEquals(good.program(1), ScheduleCompiler.compile(pair(), 8).program(1));
    }

    @Test
    void rejectsASendWithoutItsRecv() {
        String why = rejection(new Schedule(pair(), new int[][] {
                start0().send(1, 1, 0, 2).compute(1, -1).recv(1, 2, 0, 2).sync(1, 0).build(),
                start1().compute(1, -1).send(1, 2, 0, 2).sync(1, 0).build()}, 8));
        assertTrue(why.contains("worker 0 op 1 (SEND x w0->w1") && why.contains("1 SEND(s) and 0 RECV(s)"), why);
    }

    @Test
    void rejectsARecvOfADifferentSize() {
        String why = rejection(new Schedule(pair(), new int[][] {
                start0().send(1, 1, 0, 2).compute(1, -1).recv(1, 2, 0, 2).sync(1, 0).build(),
                start1().recv(1, 1, 0, 1).compute(1, -1).send(1, 2, 0, 2).sync(1, 0).build()}, 8));
        assertTrue(why.contains("worker 1 op 1 (RECV x") && why.contains("expects 1 vectors but the SEND carries 2"), why);
    }

    @Test
    void rejectsADeadlock() {
        // both workers wait for the other's message first
        String why = rejection(new Schedule(pair(), new int[][] {
                start0().recv(1, 2, 0, 2).send(1, 1, 0, 2).compute(1, -1).sync(1, 0).build(),
                start1().recv(1, 1, 0, 2).compute(1, -1).send(1, 2, 0, 2).sync(1, 0).build()}, 8));
        assertTrue(why.startsWith("possible deadlock") && why.contains("worker 0 blocked at op 1 (RECV y w1->w0")
                && why.contains("worker 1 blocked at op 1 (RECV x w0->w1"), why);
    }

    @Test
    void rejectsARingOverflow() {
        String why = rejection(new Schedule(pair(), new int[][] {
                start0().send(1, 1, 0, 8).compute(1, -1).recv(1, 2, 0, 2).sync(1, 0).build(),
                start1().recv(1, 1, 0, 8).compute(1, -1).send(1, 2, 0, 2).sync(1, 0).build()}, 8));
        assertTrue(why.contains("worker 0 op 1 (SEND x") && why.contains("overflows the link: 1 + 8 vectors; its largest message is 8 (capacity 8)"), why);
    }

    @Test
    void rejectsAUseOfDataBeforeItsRecv() {
        String why = rejection(new Schedule(pair(), new int[][] {
                start0().send(1, 1, 0, 2).compute(1, -1).recv(1, 2, 0, 2).sync(1, 0).build(),
                start1().compute(1, -1).recv(1, 1, 0, 2).send(1, 2, 0, 2).sync(1, 0).build()}, 8));
        assertTrue(why.contains("worker 1 op 1 (COMPUTE work)") && why.contains("uses x") && why.contains("before its RECV"), why);
    }

    @Test
    void rejectsASendOfAnOutputBeforeItIsComputed() {
        String why = rejection(new Schedule(pair(), new int[][] {
                start0().send(1, 1, 0, 2).compute(1, -1).recv(1, 2, 0, 2).sync(1, 0).build(),
                start1().recv(1, 1, 0, 2).send(1, 2, 0, 2).compute(1, -1).sync(1, 0).build()}, 8));
        assertTrue(why.contains("worker 1 op 2 (SEND y") && why.contains("before computing it"), why);
    }

    @Test
    void rejectsAnOpOnAWorkerThatLacksItsWeights() {
        String why = rejection(new Schedule(pair(), new int[][] {
                start0().send(1, 1, 0, 2).compute(1, -1).recv(1, 2, 0, 2).sync(1, 0).build(),
                start1().recv(1, 1, 0, 2).compute(1, 0).send(1, 2, 0, 2).sync(1, 0).build()}, 8));
        assertTrue(why.contains("worker 1 op 2 (COMPUTE work [weights experts 0-7])") && why.contains("does not hold"), why);
    }

    @Test
    void rejectsMessagesReceivedInAnotherOrderThanSent() {
        StepGraph g = pair();
        g.message("x2", 1, 0, 1, MessageSpec.Kind.INPUT, 80);
        String why = rejection(new Schedule(g, new int[][] {
                start0().send(1, 1, 0, 2).send(1, 3, 0, 1).compute(1, -1).recv(1, 2, 0, 2).sync(1, 0).build(),
                start1().recv(1, 3, 0, 1).recv(1, 1, 0, 2).compute(1, -1).send(1, 2, 0, 2).sync(1, 0).build()}, 8));
        assertTrue(why.contains("worker 1 op 1 (RECV x2") && why.contains("delivers fragment 0 of x first"), why);
    }

    @Test
    void rejectsAnOpOnTheWrongWorker() {
        String why = rejection(new Schedule(pair(), new int[][] {
                start0().recv(1, 1, 0, 2).compute(1, -1).recv(1, 2, 0, 2).sync(1, 0).build(),
                start1().send(1, 1, 0, 2).compute(1, -1).send(1, 2, 0, 2).sync(1, 0).build()}, 8));
        assertTrue(why.contains("worker 0 op 1 (RECV x") && why.contains("is received by worker 1"), why);
    }
}
