package dev.lockstep.moe.decoder;

import dev.lockstep.interconnect.VectorDescriptor;
import dev.lockstep.interconnect.schedule.MessageDescriptor;
import dev.lockstep.interconnect.schedule.MessageSpec;
import dev.lockstep.interconnect.schedule.RegionTask;
import dev.lockstep.interconnect.schedule.Schedule;
import dev.lockstep.interconnect.schedule.ScheduleCompiler;
import dev.lockstep.interconnect.schedule.ScheduleException;
import dev.lockstep.interconnect.schedule.ScheduleExecutor;
import dev.lockstep.interconnect.schedule.StepGraph;
import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.moe.DisaggregationStats;
import dev.lockstep.moe.ExecutionPlan;
import dev.lockstep.moe.ForwardBatch;
import dev.lockstep.moe.ForwardObserver;
import dev.lockstep.moe.block.Compute;
import dev.lockstep.moe.block.DenseMlpBlock;
import dev.lockstep.moe.block.SparseMoeBlock;
import dev.lockstep.moe.kv.KvCache;
import dev.lockstep.moe.kv.PagedKvCache;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * Attention-FFN disaggregation of {@link DecoderModel}'s forward: workers {@code 0..A-1} (the calling thread is
 * worker 0) own sessions, workers {@code A..A+F-1} own experts.
 *
 * <ul>
 *   <li><b>Sessions.</b> A session (its KV cache) belongs to one attention worker from its first step to its end
 *       (the least loaded when it arrives); that worker runs everything of its tokens but the routed experts:
 *       embedding, norms, attention over its KV pages, router, combine, shared experts, dense layers, the residual
 *       stream and lm_head. Each attention worker's sessions split into two micro-batches (lanes) when both fit a
 *       link at once, one otherwise.</li>
 *   <li><b>Experts.</b> FFN worker {@code f} owns experts {@code [E f/F, E (f+1)/F)} of every MoE layer. Per MoE
 *       layer and lane, the lane's worker sends it the tokens routed to its experts (their counts, then the
 *       normalized hidden rows, grouped by expert, tokens ascending: {@link SparseMoeBlock#writeShardTokens}); it runs
 *       each expert on its rows and sends the output rows back, which land where a local run writes them; the lane
 *       then combines them in ascending expert id. Every call and every sum is the colocated one, so the logits are
 *       the same bits.</li>
 *   <li><b>Schedule.</b> Each batch shape compiles to a graph of flows ({@link StepGraph#flow}): region
 *       {@code seg k} of a lane runs from MoE layer {@code k-1}'s combine to MoE layer {@code k}'s router, region
 *       {@code ffn k} of a lane on an FFN worker runs that lane's experts of layer {@code k}. Regions are declared
 *       lane by lane within a layer, so an attention worker computes lane B's attention while the FFN workers run
 *       lane A's experts, and the FFN workers run lane B's while lane A's next layer runs (MegaScale-Infer's
 *       ping-pong); the verifier proves each compiled schedule deadlock-free before its first step.</li>
 * </ul>
 * One forward at a time (the model's lock); a step allocates nothing once its shape has been compiled.
 */
final class DisaggregatedSteps implements AutoCloseable {
    private static final int MICRO_BATCHES = 2;

    private final DecoderModel model;
    private final DecoderModel.Layer[] layers;
    private final int hidden;
    private final ExecutionPlan plan;
    private final int attention;
    private final int ffn;
    private final int[] moeLayers;
    private final ScheduleExecutor executor;
    private final Lane[] lanes;
    private final SparseMoeBlock.Shard[] shards;
    private final org.agrona.collections.Long2ObjectHashMap<Compiled> compiled = new org.agrona.collections.Long2ObjectHashMap<>();
    private final Kernels kernels;
    private final int ringVectors;
    /** Per model layer (MoE layers only): FFN worker f owns experts [firstExpert[l][f], firstExpert[l][f + 1]). */
    private final int[][] firstExpert;
    private long stepsSinceCheck, replans, prefixRouted;
    /** Steps between two placement checks, and the load imbalance (max / mean rows per FFN worker) that moves experts. */
    static final int PLACEMENT_WINDOW_STEPS = 256;
    static final double PLACEMENT_IMBALANCE = 1.25;

    // session ownership: which attention worker holds each live session's KV cache
    private KvCache[] owned = new KvCache[16];
    private int[] owner = new int[16];
    private int ownedCount;
    private final int[] sessionsPerWorker;
    private final int[] heldScratch; // per attention worker: live sessions it holds (while choosing an owner)
    private int[] seqWorker = new int[16], seqLane = new int[16], seqLaneIndex = new int[16];

    // measurements, per step (driver) and cumulative
    private final long[][] busy; // per worker: start, end pairs of this step's parts (relative to the step's start)
    private final int[] busyCount;
    private long[] events = new long[64];
    private final long[] linkVectors;
    private long stepStartNs;
    private long steps, tokens, stepNanos, attentionBusyNanos, ffnBusyNanos, overlapNanos, pingPongSteps;

    /** One micro-batch of one attention worker: its tokens, its own forward state and an inline compute. */
    static final class Lane {
        final Compute compute;
        final DecoderModel.State state;
        final ForwardBatch batch = new ForwardBatch(1);
        float[] logits = new float[0];
        int[] globalRow = new int[0];
        int n;
        long tokens; // while splitting
        long[][] routed; // per MoE layer index, per expert: rows routed since the last placement check
        float[] stepLogits; // the forward's logits: this lane writes its rows

        Lane(Kernels kernels, int hidden) {
            this.compute = new Compute(kernels, new WorkerPool(1));
            this.state = new DecoderModel.State(1, hidden);
        }
    }

    /**
     * A compiled batch shape: the schedule, each region's task, and what each region is (for the planner): its kind
     * ({@link #SEGMENT}, {@link #EXPERTS} or -1), MoE layer index k, lane and FFN worker. {@code partNanos} sums the
     * measured time of each worker's parts (by COMPUTE op index) over {@code runs} steps.
     */
    record Compiled(Schedule schedule, RegionTask[] tasks, int micro, int[] kind, int[] moeIndex, int[] lane, int[] ffnWorker,
                    double[][] partNanos, long[] runs) {
    }

    static final int SEGMENT = 0;
    static final int EXPERTS = 1;

    DisaggregatedSteps(DecoderModel model, Compute compute, ExecutionPlan plan) {
        this.model = model;
        this.layers = model.layerArray();
        this.hidden = model.spec().hiddenSize();
        this.plan = plan;
        this.attention = plan.attentionWorkers();
        this.ffn = plan.ffnWorkers();
        this.kernels = compute.kernels();
        int m = 0;
        for (DecoderModel.Layer l : layers) {
            if (l.ffn() instanceof SparseMoeBlock) {
                m++;
            }
        }
        this.moeLayers = new int[m];
        m = 0;
        for (int l = 0; l < layers.length; l++) {
            if (layers[l].ffn() instanceof SparseMoeBlock) {
                moeLayers[m++] = l;
            }
        }
        for (int l : moeLayers) {
            if (moe(l).nExperts() < ffn) {
                throw new IllegalArgumentException(ffn + " FFN workers for " + moe(l).nExperts() + " experts in layer " + l
                        + ": every FFN worker must own at least one expert");
            }
        }
        this.firstExpert = new int[layers.length][];
        for (int l : moeLayers) {
            firstExpert[l] = new int[ffn + 1];
            for (int f = 0; f <= ffn; f++) {
                firstExpert[l][f] = moe(l).nExperts() * f / ffn; // even ranges until routing counts say otherwise
            }
        }
        this.lanes = new Lane[attention * MICRO_BATCHES];
        for (int i = 0; i < lanes.length; i++) {
            lanes[i] = new Lane(kernels, hidden);
            lanes[i].routed = new long[moeLayers.length][];
            for (int k = 0; k < moeLayers.length; k++) {
                lanes[i].routed[k] = new long[moe(moeLayers[k]).nExperts()];
            }
        }
        this.shards = new SparseMoeBlock.Shard[ffn];
        for (int f = 0; f < ffn; f++) {
            shards[f] = new SparseMoeBlock.Shard();
        }
        this.sessionsPerWorker = new int[attention];
        this.heldScratch = new int[attention];
        this.busy = new long[plan.workers()][64];
        this.busyCount = new int[plan.workers()];
        this.linkVectors = new long[plan.workers() * plan.workers()];
        this.ringVectors = ringVectors(plan.ringVectors());
        this.executor = new ScheduleExecutor(plan.workers(), ringVectors, plan.epochSteps(), plan.pin(), plan.idle()::create);
    }

    /** Lanes of up to this many tokens (decode steps of up to 32 sessions per attention worker) always ping-pong. */
    static final int PING_PONG_TOKENS = 16;
    private static final int MAX_RING_VECTORS = 1 << 16;

    /**
     * Slots per link: at least the plan's, and room for both micro-batches' largest messages of a
     * {@link #PING_PONG_TOKENS}-token lane at once (a power of two, at most 2^16: 20 MiB), so decode steps ping-pong
     * whatever the model's width (a 2048-wide model's 16-token message is 3,300 vectors).
     */
    private int ringVectors(int planned) {
        int ring = Math.max(planned, Integer.highestOneBit(Math.max(1, pingPongVectors(PING_PONG_TOKENS) - 1)) << 1);
        return Math.min(ring, Math.max(planned, MAX_RING_VECTORS));
    }

    /** Slots both micro-batches' largest messages of lanes of {@code tokens} tokens take on a link at once (the busiest link). */
    private int pingPongVectors(int tokens) {
        int need = 0;
        for (int l : moeLayers) {
            SparseMoeBlock b = moe(l);
            for (int f = 0; f < ffn; f++) {
                int e0 = expertsFrom(l, f), e1 = expertsFrom(l, f + 1);
                int in = MessageDescriptor.fragmentVectors(b.maxShardTokensFloats(tokens, e0, e1));
                int out = MessageDescriptor.fragmentVectors(b.maxShardRows(tokens, e0, e1) * hidden);
                need = Math.max(need, MICRO_BATCHES * Math.max(in, out));
            }
        }
        return need;
    }

    SparseMoeBlock moe(int layer) {
        return (SparseMoeBlock) layers[layer].ffn();
    }

    int expertsFrom(int layer, int f) {
        return firstExpert[layer][f];
    }

    ScheduleExecutor executor() {
        return executor;
    }

    /** The schedule a batch of {@code tokens} tokens in one session runs, if compiled (for inspect). */
    Schedule schedule(int tokens) {
        Compiled c = compiled.get(key(1, bucket(tokens)));
        return c == null ? null : c.schedule;
    }

    // ---------------------------------------------------------------- one step (the driver, worker 0)

    void forward(ForwardBatch batch, float[] logits, ForwardObserver observer) {
        if (observer != ForwardObserver.NONE) {
            throw new UnsupportedOperationException("forward observers (hidden states, router taps) run on a colocated plan; this model runs "
                    + plan);
        }
        for (int q = 0; q < batch.sequences(); q++) {
            batch.sequenceCache(q).reserve(batch.sequenceTokens(q));
        }
        model.ensureRope(batch);
        if (++stepsSinceCheck >= PLACEMENT_WINDOW_STEPS) {
            rebalance(PLACEMENT_IMBALANCE);
        }
        int micro = split(batch);
        int bucket = bucket(maxLaneTokens());
        if (micro > 1 && !pingPongFits(bucket)) {
            micro = 1;
            split(batch, 1);
            bucket = bucket(maxLaneTokens());
        }
        for (Lane lane : lanes) {
            lane.stepLogits = logits;
            if (lane.n > 0) {
                lane.state.ensure(lane.n, hidden);
                int rows = lane.batch.logitsRows() * model.vocabSize();
                if (lane.logits.length < rows) {
                    lane.logits = new float[rows];
                }
            }
        }
        Compiled c = shape(micro, bucket);
        for (int l : moeLayers) {
            for (int f = 0; f < ffn; f++) {
                shards[f].ensure(moe(l), bucket, expertsFrom(l, f), expertsFrom(l, f + 1));
            }
        }
        Arrays.fill(busyCount, 0);
        stepStartNs = System.nanoTime();
        try {
            executor.runStep(c.schedule, c.tasks);
        } catch (ScheduleException e) {
            // a part's own failure (a non-finite value names its token) is the one to report
            if (e.getCause() instanceof RuntimeException r) {
                throw r;
            }
            throw e;
        } finally {
            for (Lane lane : lanes) {
                lane.stepLogits = null;
            }
        }
        long wall = System.nanoTime() - stepStartNs;
        measure(wall, batch.size(), micro);
        for (int w = 0; w < plan.workers(); w++) {
            for (int i = 0; i < busyCount[w] && i < c.partNanos[w].length; i++) {
                c.partNanos[w][i] += busy[w][2 * i + 1] - busy[w][2 * i];
            }
        }
        c.runs[0]++;
        for (int q = 0; q < batch.sequences(); q++) {
            batch.sequenceCache(q).commit(batch.sequenceTokens(q));
        }
    }

    private int maxLaneTokens() {
        int max = 0;
        for (Lane lane : lanes) {
            max = Math.max(max, lane.n);
        }
        return max;
    }

    private static int bucket(int tokens) {
        return tokens <= 1 ? 1 : Integer.highestOneBit(tokens - 1) << 1;
    }

    private static long key(int micro, int bucket) {
        return (long) micro << 32 | bucket;
    }

    /**
     * Two micro-batches per attention worker when, on every link, both of a layer's token messages (and both output
     * messages) fit the ring at once: then no send waits for a receive that waits for it.
     */
    private boolean pingPongFits(int bucket) {
        return pingPongVectors(bucket) <= ringVectors;
    }

    /** Gives each sequence its attention worker and fills the lanes; returns the micro-batches per worker (2 when a worker has 2+ sessions). */
    private int split(ForwardBatch batch) {
        int sequences = batch.sequences();
        if (seqWorker.length < sequences) {
            seqWorker = new int[Math.max(sequences, 2 * seqWorker.length)];
            seqLane = new int[seqWorker.length];
            seqLaneIndex = new int[seqWorker.length];
        }
        forgetClosed();
        Arrays.fill(sessionsPerWorker, 0);
        int micro = 1;
        for (int q = 0; q < sequences; q++) {
            int w = ownerOf(batch.sequenceCache(q));
            seqWorker[q] = w;
            if (++sessionsPerWorker[w] > 1) {
                micro = MICRO_BATCHES;
            }
        }
        split(batch, micro);
        return micro;
    }

    /**
     * Fills the lanes for {@code micro} micro-batches per worker: each sequence joins the lane of its worker with fewer
     * tokens so far (ties: the first), its tokens in batch order; each lane logits row remembers its row in the step.
     */
    private void split(ForwardBatch batch, int micro) {
        for (Lane lane : lanes) {
            lane.batch.clear();
            lane.tokens = 0;
        }
        for (int q = 0; q < batch.sequences(); q++) {
            int lane = seqWorker[q] * MICRO_BATCHES;
            if (micro > 1 && lanes[lane + 1].tokens < lanes[lane].tokens) {
                lane++;
            }
            seqLane[q] = lane;
            seqLaneIndex[q] = lanes[lane].batch.addSequence(batch.sequenceCache(q));
            lanes[lane].tokens += batch.sequenceTokens(q);
        }
        int row = 0;
        for (int i = 0; i < batch.size(); i++) {
            Lane lane = lanes[seqLane[batch.sequence(i)]];
            boolean wants = batch.wantsLogits(i);
            if (wants) {
                int r = lane.batch.logitsRows();
                if (lane.globalRow.length <= r) {
                    lane.globalRow = Arrays.copyOf(lane.globalRow, Math.max(4, 2 * (r + 1)));
                }
                lane.globalRow[r] = row++;
            }
            lane.batch.add(seqLaneIndex[batch.sequence(i)], batch.token(i), wants);
        }
        for (Lane lane : lanes) {
            lane.n = lane.batch.size();
        }
    }

    /**
     * The attention worker that holds {@code cache}: its owner, or, for a new session, the worker whose sessions share
     * the longest prefix of its KV pages (a fork, a prompt found in the prefix cache: Dynamo's KV-aware routing),
     * unless that worker already holds more than {@link #ROUTING_SLACK} sessions above the least loaded; otherwise the
     * least loaded (ties: the lowest).
     */
    private int ownerOf(KvCache cache) {
        for (int i = 0; i < ownedCount; i++) {
            if (owned[i] == cache) {
                return owner[i];
            }
        }
        int[] held = sessionsHeld();
        int least = 0;
        for (int w = 1; w < attention; w++) {
            if (held[w] < held[least]) {
                least = w;
            }
        }
        int best = least, bestShared = 0;
        if (cache instanceof PagedKvCache paged && paged.mappedBlocks() > 0) {
            for (int i = 0; i < ownedCount; i++) {
                int w = owner[i];
                if (owned[i] instanceof PagedKvCache other && held[w] <= held[least] + ROUTING_SLACK) {
                    int shared = sharedPrefixPages(paged, other);
                    if (shared > bestShared || (shared == bestShared && shared > 0 && w < best)) {
                        best = w;
                        bestShared = shared;
                    }
                }
            }
        }
        if (ownedCount == owned.length) {
            owned = Arrays.copyOf(owned, 2 * ownedCount);
            owner = Arrays.copyOf(owner, 2 * ownedCount);
        }
        owned[ownedCount] = cache;
        owner[ownedCount++] = best;
        if (bestShared > 0) {
            prefixRouted++;
        }
        return best;
    }

    /** Sessions a worker may hold above the least loaded one and still take a new session for the KV prefix it shares. */
    static final int ROUTING_SLACK = 2;

    /** Leading KV pages two caches share (the same page ids: a fork's, or pages the prefix cache attached to both). */
    private static int sharedPrefixPages(PagedKvCache a, PagedKvCache b) {
        int n = Math.min(a.mappedBlocks(), b.mappedBlocks()), i = 0;
        while (i < n && a.page(i) == b.page(i)) {
            i++;
        }
        return i;
    }

    /** The attention worker holding {@code cache}'s session, or -1 if it has not run yet. */
    int attentionWorkerOf(KvCache cache) {
        for (int i = 0; i < ownedCount; i++) {
            if (owned[i] == cache) {
                return owner[i];
            }
        }
        return -1;
    }

    private int[] sessionsHeld() {
        Arrays.fill(heldScratch, 0);
        for (int i = 0; i < ownedCount; i++) {
            heldScratch[owner[i]]++;
        }
        return heldScratch;
    }

    /** Drops the sessions whose KV cache has been closed. */
    private void forgetClosed() {
        int k = 0;
        for (int i = 0; i < ownedCount; i++) {
            if (!owned[i].isClosed()) {
                owned[k] = owned[i];
                owner[k++] = owner[i];
            }
        }
        Arrays.fill(owned, k, ownedCount, null);
        ownedCount = k;
    }

    /**
     * The compiled shape a decode step of {@code sessions} sessions (one token each) runs, as the step would split
     * them: sessions spread over the attention workers (the least loaded first), two micro-batches per worker when
     * one holds two or more and they fit the links; {@code laneTokens} receives each lane's tokens.
     */
    Compiled decodeShape(int sessions, int[] laneTokens) {
        java.util.Arrays.fill(laneTokens, 0);
        int micro = 1;
        for (int i = 0; i < sessions; i++) {
            int w = i % attention;
            if (i >= attention) {
                micro = MICRO_BATCHES;
            }
            int lane = w * MICRO_BATCHES;
            if (laneTokens[lane + 1] < laneTokens[lane]) {
                lane++;
            }
            laneTokens[lane]++;
        }
        int max = 0;
        for (int t : laneTokens) {
            max = Math.max(max, t);
        }
        if (micro > 1 && !pingPongFits(bucket(max))) {
            micro = 1;
            for (int w = 0; w < attention; w++) {
                laneTokens[w * MICRO_BATCHES] += laneTokens[w * MICRO_BATCHES + 1];
                laneTokens[w * MICRO_BATCHES + 1] = 0;
            }
            max = 0;
            for (int t : laneTokens) {
                max = Math.max(max, t);
            }
        }
        return shape(micro, bucket(max));
    }

    /** The compiled shape of {@code micro} lanes per attention worker of up to {@code bucket} tokens (compiled on first use). */
    private Compiled shape(int micro, int bucket) {
        long key = key(micro, bucket);
        Compiled c = compiled.get(key);
        if (c == null) {
            c = compile(micro, bucket);
            compiled.put(key, c);
        }
        return c;
    }

    int lanes() {
        return lanes.length;
    }

    void clearMeasurements() {
        for (Compiled c : compiled.values()) {
            for (double[] p : c.partNanos()) {
                Arrays.fill(p, 0);
            }
            c.runs()[0] = 0;
        }
    }

    /** The model layers with routed experts, in order (read-only). */
    int[] moeLayers() {
        return moeLayers;
    }

    ExecutionPlan plan() {
        return plan;
    }

    // ---------------------------------------------------------------- expert placement

    /**
     * Between steps: when the rows routed since the last check loaded the FFN workers unevenly (the busiest above
     * {@code threshold} x the mean, in some MoE layer), moves the range boundaries so each worker's experts got about
     * the same rows, and drops the compiled schedules (their messages are sized by the ranges). Never inside a step;
     * the logits do not change (each expert computes the same rows, combined in the same order). Returns whether the
     * placement changed.
     */
    boolean rebalance(double threshold) {
        stepsSinceCheck = 0;
        boolean changed = false;
        for (int k = 0; k < moeLayers.length; k++) {
            int l = moeLayers[k];
            int experts = moe(l).nExperts();
            long[] rows = new long[experts];
            long total = 0;
            for (Lane lane : lanes) {
                for (int e = 0; e < experts; e++) {
                    rows[e] += lane.routed[k][e];
                    lane.routed[k][e] = 0;
                }
            }
            for (long r : rows) {
                total += r;
            }
            if (total == 0 || ffn == 1) {
                continue;
            }
            if (imbalance(rows, firstExpert[l]) <= threshold) {
                continue;
            }
            int[] balanced = balanced(rows, ffn);
            if (imbalance(rows, balanced) < imbalance(rows, firstExpert[l]) && !Arrays.equals(balanced, firstExpert[l])) {
                System.arraycopy(balanced, 0, firstExpert[l], 0, balanced.length);
                changed = true;
            }
        }
        if (changed) {
            replans++;
            compiled.clear();
        }
        return changed;
    }

    /** The busiest FFN worker's rows over the mean, for ranges {@code first}. */
    static double imbalance(long[] rows, int[] first) {
        int workers = first.length - 1;
        long total = 0, max = 0;
        for (int f = 0; f < workers; f++) {
            long load = 0;
            for (int e = first[f]; e < first[f + 1]; e++) {
                load += rows[e];
            }
            total += load;
            max = Math.max(max, load);
        }
        return total == 0 ? 1 : (double) max * workers / total;
    }

    /**
     * Contiguous ranges, at least one expert each, whose rows are as even as a greedy cut makes them: boundary f at
     * the expert where the running sum is nearest f/F of the total.
     */
    static int[] balanced(long[] rows, int workers) {
        int experts = rows.length;
        long total = 0;
        for (long r : rows) {
            total += r;
        }
        int[] first = new int[workers + 1];
        first[workers] = experts;
        long prefix = 0; // rows of experts [0, e)
        int e = 0;
        for (int f = 1; f < workers; f++) {
            double target = (double) total * f / workers;
            int lo = first[f - 1] + 1, hi = experts - (workers - f);
            while (e < lo) {
                prefix += rows[e++];
            }
            while (e < hi && Math.abs(prefix + rows[e] - target) <= Math.abs(prefix - target)) {
                prefix += rows[e++];
            }
            first[f] = e;
        }
        return first;
    }

    /** FFN worker {@code f}'s first expert of every MoE layer and the end of its range: {@code [layer][f]}, MoE layers only. */
    int[][] placement() {
        int[][] p = new int[moeLayers.length][];
        for (int k = 0; k < moeLayers.length; k++) {
            p[k] = firstExpert[moeLayers[k]].clone();
        }
        return p;
    }

    // ---------------------------------------------------------------- compiling a batch shape

    /**
     * The graph of a step with {@code micro} lanes per attention worker of at most {@code bucket} tokens each: per MoE
     * layer k and lane (micro-batch 0 of every worker, then micro-batch 1), the lane's segment k, then its experts on
     * each FFN worker; the lane's segment k+1 consumes their outputs. A last region on worker 0 takes a doorbell from
     * every other attention worker's last segment, so the step returns when every lane's logits are written.
     */
    private Compiled compile(int micro, int bucket) {
        int workers = plan.workers();
        int moes = moeLayers.length;
        StepGraph g = new StepGraph(workers);
        int attentionWeights = g.weightGroup("embedding, attention, norms, routers, shared experts, dense layers, lm_head");
        for (int a = 0; a < attention; a++) {
            g.owns(a, attentionWeights);
        }
        int[][] expertWeights = new int[moes][ffn];
        for (int k = 0; k < moes; k++) {
            int l = moeLayers[k];
            for (int f = 0; f < ffn; f++) {
                expertWeights[k][f] = g.weightGroup("layer " + l + " experts " + expertsFrom(l, f) + "-" + (expertsFrom(l, f + 1) - 1));
                g.owns(attention + f, expertWeights[k][f]);
            }
        }
        java.util.List<RegionTask> tasks = new java.util.ArrayList<>();
        java.util.List<int[]> what = new java.util.ArrayList<>(); // per region: kind, k, lane, f
        tasks.add(STEP_START);
        what.add(new int[] {-1, -1, -1, -1});
        int[][] ffnRegions = new int[lanes.length][ffn];
        int[] lastSegment = new int[lanes.length];
        for (int k = 0; k <= moes; k++) {
            for (int m = 0; m < micro; m++) {
                for (int a = 0; a < attention; a++) {
                    int lane = a * MICRO_BATCHES + m;
                    int r = g.region("seg " + k + " lane " + a + "." + m);
                    g.part(r, a, attentionWeights);
                    tasks.add(new SegmentTask(k, lanes[lane]));
                    what.add(new int[] {SEGMENT, k, lane, -1});
                    lastSegment[lane] = r;
                    if (k > 0) {
                        int l = moeLayers[k - 1];
                        for (int f = 0; f < ffn; f++) {
                            int rows = moe(l).maxShardRows(bucket, expertsFrom(l, f), expertsFrom(l, f + 1));
                            g.flow("l" + l + ".out lane " + a + "." + m, ffnRegions[lane][f], attention + f, r, a, rows * hidden);
                        }
                    }
                    if (k < moes) {
                        int l = moeLayers[k];
                        for (int f = 0; f < ffn; f++) {
                            int fr = g.region("ffn " + k + " lane " + a + "." + m + " on f" + f);
                            g.part(fr, attention + f, expertWeights[k][f]);
                            tasks.add(new ExpertsTask(k, lanes[lane], f));
                            what.add(new int[] {EXPERTS, k, lane, f});
                            g.flow("l" + l + ".tokens lane " + a + "." + m, r, a, fr, attention + f,
                                    moe(l).maxShardTokensFloats(bucket, expertsFrom(l, f), expertsFrom(l, f + 1)));
                            ffnRegions[lane][f] = fr;
                        }
                    }
                }
            }
        }
        int done = g.region("step done");
        g.part(done, 0, StepGraph.NO_WEIGHTS);
        tasks.add(STEP_DONE);
        what.add(new int[] {-1, -1, -1, -1});
        for (int m = 0; m < micro; m++) {
            for (int a = 1; a < attention; a++) {
                g.flow("done lane " + a + "." + m, lastSegment[a * MICRO_BATCHES + m], a, done, 0, 0);
            }
        }
        Schedule s = ScheduleCompiler.compile(g, ringVectors);
        for (int w = 0; w < workers; w++) {
            if (busy[w].length < 2 * s.ops(w)) {
                busy[w] = new long[2 * s.ops(w)];
            }
        }
        if (events.length < 2 * s.totalOps()) {
            events = new long[2 * s.totalOps()];
        }
        int regions = what.size();
        int[] kind = new int[regions], moeIndex = new int[regions], laneOf = new int[regions], ffnOf = new int[regions];
        for (int r = 0; r < regions; r++) {
            kind[r] = what.get(r)[0];
            moeIndex[r] = what.get(r)[1];
            laneOf[r] = what.get(r)[2];
            ffnOf[r] = what.get(r)[3];
        }
        double[][] partNanos = new double[workers][];
        for (int w = 0; w < workers; w++) {
            partNanos[w] = new double[s.ops(w)];
        }
        return new Compiled(s, tasks.toArray(new RegionTask[0]), micro, kind, moeIndex, laneOf, ffnOf, partNanos, new long[1]);
    }

    private static final RegionTask STEP_START = (RegionTask.Doorbells) (worker, stamp) -> {
        throw new IllegalStateException("the step start has no part");
    };

    private static final RegionTask STEP_DONE = (RegionTask.Doorbells) (worker, stamp) -> {
    };

    /** Region {@code seg k} of a lane: MoE layer k-1's combine and residual, the layers in between, MoE layer k's router (or the head). */
    private final class SegmentTask implements RegionTask {
        private final int k;
        private final Lane lane;

        SegmentTask(int k, Lane lane) {
            this.k = k;
            this.lane = lane;
        }

        @Override
        public void compute(int worker, long stamp) {
            long t0 = System.nanoTime();
            if (lane.n > 0) {
                segment(lane, k);
            }
            busy(worker, t0);
        }

        // the tokens flows this segment produces (to FFN worker m.to() - attention)
        @Override
        public int payloadFloats(MessageSpec m) {
            int f = m.to() - attention;
            int l = moeLayers[k];
            int floats = lane.n == 0 ? 0 : moe(l).shardTokensFloats(lane.state.moe, expertsFrom(l, f), expertsFrom(l, f + 1));
            countLink(m, floats);
            return floats;
        }

        @Override
        public void write(MessageSpec m, int off, MemorySegment dst, long dstOff, int floats) {
            int f = m.to() - attention;
            int l = moeLayers[k];
            moe(l).writeShardTokens(lane.state.moe, expertsFrom(l, f), expertsFrom(l, f + 1), off, dst, dstOff, floats);
        }

        @Override
        public void read(MessageSpec m, int off, MemorySegment src, long srcOff, int floats, int total) {
            shards[m.to() - attention].readTokens(off, src, srcOff, floats);
        }
    }

    /** Region {@code ffn k} of a lane on FFN worker {@code f}: its experts of MoE layer k on the lane's tokens routed to them. */
    private final class ExpertsTask implements RegionTask {
        private final int k;
        private final Lane lane;
        private final int f;

        ExpertsTask(int k, Lane lane, int f) {
            this.k = k;
            this.lane = lane;
            this.f = f;
        }

        @Override
        public void compute(int worker, long stamp) {
            long t0 = System.nanoTime();
            int l = moeLayers[k];
            if (lane.n > 0) {
                moe(l).runShard(kernels, expertsFrom(l, f), expertsFrom(l, f + 1), shards[f]);
            } else {
                shards[f].empty();
            }
            busy(worker, t0);
        }

        @Override
        public int payloadFloats(MessageSpec m) {
            int floats = shards[f].rows() * hidden;
            countLink(m, floats);
            return floats;
        }

        @Override
        public void write(MessageSpec m, int off, MemorySegment dst, long dstOff, int floats) {
            shards[f].writeOutput(off, dst, dstOff, floats);
        }

        @Override
        public void read(MessageSpec m, int off, MemorySegment src, long srcOff, int floats, int total) {
            int l = moeLayers[k];
            moe(l).readShardOutput(lane.state.moe, expertsFrom(l, f), off, src, srcOff, floats);
        }
    }

    /** Lane {@code lane}'s segment {@code k} (see {@link SegmentTask}), on its attention worker. */
    private void segment(Lane lane, int k) {
        Compute c = lane.compute;
        DecoderModel.State s = lane.state;
        ForwardBatch b = lane.batch;
        int n = lane.n;
        int from;
        if (k == 0) {
            model.embed(b, s);
            from = 0;
        } else {
            int l = moeLayers[k - 1];
            moe(l).finish(c, s.xb, n, s.moe, s.branch);
            model.ffnResidual(c, l, b, s);
            from = l + 1;
        }
        int to = k < moeLayers.length ? moeLayers[k] : layers.length;
        for (int l = from; l < to; l++) {
            model.attentionHalf(c, l, b, s);
            ((DenseMlpBlock) layers[l].ffn()).forward(c, s.xb, n, s.mlp, s.branch);
            model.ffnResidual(c, l, b, s);
        }
        if (k < moeLayers.length) {
            int l = moeLayers[k];
            model.attentionHalf(c, l, b, s);
            SparseMoeBlock block = moe(l);
            block.route(c, l, s.xb, n, s.moe, ForwardObserver.NONE);
            long[] routed = lane.routed[k];
            for (int e = 0; e < routed.length; e++) {
                routed[e] += block.routedRows(s.moe, e);
            }
        } else {
            model.head(c, b, s, lane.logits, ForwardObserver.NONE);
            int vocab = model.vocabSize();
            for (int r = 0; r < b.logitsRows(); r++) {
                System.arraycopy(lane.logits, r * vocab, lane.stepLogits, lane.globalRow[r] * vocab, vocab);
            }
        }
    }

    // ---------------------------------------------------------------- measurements

    /** Vectors a message of {@code floats} payload floats takes on its link, headers included (sender side). */
    private void countLink(MessageSpec m, int floats) {
        int payload = VectorDescriptor.vectorsForFloats(floats);
        int per = ringVectors - 1;
        int fragments = Math.max(1, (payload + per - 1) / per);
        linkVectors[m.from() * plan.workers() + m.to()] += fragments + payload;
    }

    /** Records a part of worker {@code worker} that ran from {@code t0} to now (each worker writes only its own row). */
    private void busy(int worker, long t0) {
        long[] b = busy[worker];
        int i = busyCount[worker];
        if (2 * i + 1 < b.length) {
            b[2 * i] = t0 - stepStartNs;
            b[2 * i + 1] = System.nanoTime() - stepStartNs;
            busyCount[worker] = i + 1;
        }
    }

    /** After a step (every worker's writes visible: they precede the flows the driver received): busy and overlap. */
    private void measure(long wallNanos, int stepTokens, int micro) {
        steps++;
        tokens += stepTokens;
        stepNanos += wallNanos;
        if (micro > 1) {
            pingPongSteps++;
        }
        int e = 0;
        for (int w = 0; w < plan.workers(); w++) {
            long pool = w < attention ? 0 : 1;
            for (int i = 0; i < busyCount[w]; i++) {
                events[e++] = Math.max(0, busy[w][2 * i]) << 2 | pool << 1 | 1;      // start
                events[e++] = Math.max(0, busy[w][2 * i + 1]) << 2 | pool << 1;      // end
            }
        }
        Arrays.sort(events, 0, e);
        int attentionActive = 0, ffnActive = 0;
        long prev = 0;
        for (int i = 0; i < e; i++) {
            long t = events[i] >>> 2;
            long dt = t - prev;
            if (attentionActive > 0) {
                attentionBusyNanos += dt;
            }
            if (ffnActive > 0) {
                ffnBusyNanos += dt;
            }
            if (attentionActive > 0 && ffnActive > 0) {
                overlapNanos += dt;
            }
            prev = t;
            int delta = (events[i] & 1) == 1 ? 1 : -1;
            if ((events[i] >>> 1 & 1) == 0) {
                attentionActive += delta;
            } else {
                ffnActive += delta;
            }
        }
    }

    DisaggregationStats stats() {
        long[] drift = new long[plan.workers()];
        for (int w = 0; w < plan.workers(); w++) {
            drift[w] = executor.driftNs(w).getValueAtPercentile(99);
        }
        return new DisaggregationStats(attention, ffn, steps, pingPongSteps, tokens, stepNanos, attentionBusyNanos, ffnBusyNanos,
                overlapNanos, linkVectors.clone(), executor.vectorsSent(), drift, executor.partsComputedAll(), replans, prefixRouted);
    }

    @Override
    public void close() {
        executor.close();
    }
}
