package dev.lockstep.moe.block;

import dev.lockstep.interconnect.schedule.MessageSpec;
import dev.lockstep.interconnect.schedule.PartClaims;
import dev.lockstep.interconnect.schedule.RegionTask;
import dev.lockstep.interconnect.schedule.Schedule;
import dev.lockstep.interconnect.schedule.ScheduleCompiler;
import dev.lockstep.interconnect.schedule.ScheduleExecutor;
import dev.lockstep.interconnect.schedule.StepGraph;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.moe.ExecutionPlan;


/**
 * A forward's regions on a {@link ScheduleExecutor}. The step's program is not written by hand: the first
 * step of each bucket of batch shapes runs on the coordinator alone while its regions are recorded into a
 * {@link StepGraph}; the graph is compiled, verified and cached by bucket, and every later step of that bucket
 * runs the compiled programs. A region of independent items is split statically (worker {@code w} takes chunk
 * {@code w} of {@code workers}, as {@link WorkerPool} numbers them) and its workers are ordered by doorbell
 * messages, its data staying in shared memory; a {@link DataRegion} moves its data as vectors.
 */
final class ScheduledSteps implements AutoCloseable {
    private enum Mode { IDLE, RECORD, RUN }

    private final ScheduleExecutor executor;
    private final ExecutionPlan plan;
    private final org.agrona.collections.Long2ObjectHashMap<Schedule> compiled = new org.agrona.collections.Long2ObjectHashMap<>(); // no boxing per step
    private final RangeRegion range;
    private Mode mode = Mode.IDLE;
    private long key;
    private int maxTokens;
    private StepGraph recording;
    private Schedule running;
    private int region;

    ScheduledSteps(ExecutionPlan plan) {
        this.plan = plan;
        this.range = new RangeRegion();
        this.executor = new ScheduleExecutor(plan.workers(), plan.ringVectors(), plan.epochSteps(), plan.pin(), plan.idle()::create);
    }

    int workers() {
        return plan.workers();
    }

    ExecutionPlan plan() {
        return plan;
    }

    ScheduleExecutor executor() {
        return executor;
    }

    /** The schedule that runs a batch of {@code tokens} tokens and {@code logitsRows} logits rows, if compiled. */
    Schedule schedule(int tokens, int logitsRows) {
        return compiled.get(shapeKey(tokens, logitsRows));
    }

    /**
     * Batches share a schedule when their forwards have the same regions: one token (its regions of tokens run
     * inline) or a power-of-two bucket of tokens, with or without logits rows. A bucket's schedule is compiled for
     * its largest batch (messages sized for it), and every region of two or more items involves every worker, so
     * any batch of the bucket fits it: about 2 log2(batch) schedules instead of one per (tokens, rows).
     */
    private static long shapeKey(int tokens, int logitsRows) {
        return (long) bucketTokens(tokens) << 1 | (logitsRows > 0 ? 1 : 0);
    }

    private static int bucketTokens(int tokens) {
        return tokens <= 1 ? 1 : Integer.highestOneBit(tokens - 1) << 1;
    }

    void begin(int tokens, int logitsRows) {
        if (mode != Mode.IDLE) {
            throw new IllegalStateException("a step is already running");
        }
        key = shapeKey(tokens, logitsRows);
        maxTokens = bucketTokens(tokens);
        region = 0;
        running = compiled.get(key);
        if (running == null) {
            recording = new StepGraph(plan.workers());
            mode = Mode.RECORD;
        } else {
            mode = Mode.RUN;
            executor.reserveRegions(running.graph().regions());
            executor.begin(running);
        }
    }

    void end() {
        Mode m = mode;
        mode = Mode.IDLE;
        if (m == Mode.RUN) {
            executor.end();
        } else if (m == Mode.RECORD) {
            Schedule s = ScheduleCompiler.compile(recording, plan.ringVectors());
            recording = null;
            executor.reserveRegions(s.graph().regions());
            compiled.put(key, s); // verified by the executor before its first run
        }
    }

    void abort() {
        Mode m = mode;
        mode = Mode.IDLE;
        recording = null;
        if (m == Mode.RUN) {
            executor.abort();
        }
    }

    /** A region of {@code items} independent items; fewer than two run inline, as on a fork-join pool. */
    void forRange(String name, int items, WorkerPool.RangeTask task) {
        if (items < 2 || mode == Mode.IDLE) {
            task.run(0, 0, items);
            return;
        }
        if (mode == Mode.RECORD) {
            int r = recording.region(name);
            // every worker takes part (a smaller batch of the bucket may leave a chunk empty: that worker then only
            // rings the doorbells), so the schedule fits every batch of its bucket
            for (int w = 0; w < plan.workers(); w++) {
                recording.part(r, w, StepGraph.NO_WEIGHTS);
                if (w > 0) {
                    recording.message(name + ".go", r, 0, w, MessageSpec.Kind.INPUT, 0);
                    recording.message(name + ".done", r, w, 0, MessageSpec.Kind.OUTPUT, 0);
                }
            }
            task.run(0, 0, items);
            return;
        }
        range.start(task, items);
        try {
            executor.region(++region, range);
        } finally {
            range.task = null;
        }
    }

    /** A region whose data moves as messages. */
    void dataRegion(String name, DataRegion r) {
        if (mode == Mode.RECORD) {
            r.declare(recording, recording.region(name), maxTokens);
            r.runAll();
        } else if (mode == Mode.RUN) {
            executor.region(++region, r);
        } else {
            r.runAll();
        }
    }

    private int chunkStart(int worker, int items) {
        return (int) ((long) items * worker / plan.workers());
    }

    /**
     * Worker {@code w} runs chunk {@code w} of the items; messages are doorbells. The coordinator, once its own chunk
     * is done, takes over any chunk its worker has not claimed yet (a worker late or descheduled), as the fork-join
     * pool's caller does; a chunk is claimed once per run (compare-and-set with the run's stamp), so a late worker
     * finds it taken and only sends its doorbell, which the coordinator then receives later instead of waiting.
     */
    private final class RangeRegion implements RegionTask.Doorbells {
        WorkerPool.RangeTask task;
        int items;
        private final PartClaims claims = new PartClaims(plan.workers());
        private final boolean[] taken = new boolean[plan.workers()];

        /** This run's work; no chunk taken over yet (the coordinator may have no chunk of its own, and so take none). */
        void start(WorkerPool.RangeTask task, int items) {
            this.task = task;
            this.items = items;
            java.util.Arrays.fill(taken, false);
        }

        @Override
        public void compute(int worker, long stamp) {
            if (worker == 0) {
                run(0, 0);
                for (int w = 1; w < taken.length; w++) {
                    taken[w] = chunkStart(w, items) < chunkStart(w + 1, items) && claims.claim(w, stamp);
                    if (taken[w]) {
                        run(w, 0); // on the coordinator: its scratch slot
                    }
                }
            } else if (claims.claim(worker, stamp)) { // only then are task and items this run's
                run(worker, worker);
            }
        }

        private void run(int chunk, int worker) {
            int s = chunkStart(chunk, items), e = chunkStart(chunk + 1, items);
            if (s < e) {
                task.run(worker, s, e);
            }
        }

        @Override
        public boolean takenOver(MessageSpec m) {
            return taken[m.from()];
        }
    }

    @Override
    public void close() {
        executor.close();
    }
}
