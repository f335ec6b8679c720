package dev.lockstep.moe.block;

import dev.lockstep.interconnect.schedule.MessageSpec;
import dev.lockstep.interconnect.schedule.PartClaims;
import dev.lockstep.interconnect.schedule.StepGraph;
import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.moe.ForwardObserver;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Top-k routed experts (HF {@code Qwen3MoeSparseMoeBlock} and its kin): router logits (+ bias), the routing rule
 * of the family ({@link Routing}), then each selected expert runs on all of its tokens at once (tokens grouped by
 * expert, matrix-matrix), and each token's output is summed over its experts in ascending expert id, as HF's
 * {@code index_add_} loop does. That fixed order makes a token's output independent of its batch mates and of
 * which worker ran which expert. An expert is {@code down(act(gate x + bg, up x + bu)) + bd} with the family's
 * activation ({@link Activation}) and optional biases; an optional shared expert is added after the routed sum,
 * scaled by the sigmoid of its gate (Qwen2-MoE).
 */
public final class SparseMoeBlock implements FeedForward {
    /** How router logits become the top-k experts and their weights. */
    public enum Routing {
        /** Softmax over all experts in float32, top-k of the probabilities (renormalized when {@link Spec#normTopK}). */
        SOFTMAX_TOP_K,
        /** Top-k of the logits, softmax over those k (gpt-oss, Granite). */
        TOP_K_SOFTMAX,
        /**
         * DeepSeek-V3: scores {@code sigmoid(logits)}; the choice adds the correction bias (the block's router bias);
         * groups ranked by the sum of their two best choices, the best {@link Spec#topKGroup} kept (the others'
         * choices set to 0.0, as HF's {@code masked_fill} does), top-k of the choices; weights are the scores
         * (bias-free), divided by their sum + 1e-20 when {@link Spec#normTopK}, times {@link Spec#routedScaling}.
         */
        SIGMOID_GROUPED
    }

    /** The expert FFN's gating. */
    public enum Activation {
        /** {@code silu(g) * u}. */
        SWIGLU,
        /** gpt-oss: {@code g = min(g, limit)}, {@code u = clamp(u, -limit, limit)}, {@code (u + 1) * g * sigmoid(alpha g)}. */
        CLAMPED_SWIGLU
    }

    /** Routing and activation of one MoE layer; {@code alpha} and {@code limit} are used by {@link Activation#CLAMPED_SWIGLU}. */
    public record Spec(int topK, Routing routing, boolean normTopK, Activation activation, float alpha, float limit,
                       int groups, int topKGroup, float routedScaling) {
        public Spec(int topK, Routing routing, boolean normTopK, Activation activation, float alpha, float limit) {
            this(topK, routing, normTopK, activation, alpha, limit, 1, 1, 1f);
        }

        /** Qwen3-MoE's: softmax, top-k, optional renormalization, SwiGLU. */
        public static Spec softmaxTopK(int topK, boolean normTopK) {
            return new Spec(topK, Routing.SOFTMAX_TOP_K, normTopK, Activation.SWIGLU, 0f, 0f);
        }
    }

    /** Per-expert biases ({@code [experts][inter]} for gate and up, {@code [experts][hidden]} for down), or null. */
    public record ExpertBiases(float[][] gate, float[][] up, float[][] down) {
    }

    /** An always-on expert added to every token's output, scaled by {@code sigmoid(gate . x)} when {@code gate} is set. */
    public record SharedExpert(DenseMlpBlock mlp, WeightMatrix gate) {
    }

    private final WeightMatrix router;  // [nExperts, hidden]
    private final WeightMatrix[] gate;  // [nExperts] x [inter, hidden]
    private final WeightMatrix[] up;    // [nExperts] x [inter, hidden]
    private final WeightMatrix[] down;  // [nExperts] x [hidden, inter]
    private final int nExperts;
    private final int topK;
    private final int hidden;
    private final int inter;
    private final boolean normTopK;
    private final Spec spec;
    private final float[] routerBias;  // [nExperts] or null
    private final ExpertBiases biases; // or null
    private final SharedExpert shared; // or null

    /** Weight bytes one token's forward streams: the router and top-k experts (the average expert's bytes). */
    @Override
    public long weightBytesPerToken() {
        long experts = 0;
        for (int e = 0; e < nExperts; e++) {
            experts += gate[e].byteSize() + up[e].byteSize() + down[e].byteSize();
        }
        return router.byteSize() + experts * topK / nExperts + sharedBytes();
    }

    /** Bytes of the router's weights. */
    public long routerBytes() {
        return router.byteSize();
    }

    /** Bytes of routed expert {@code e}'s three matrices. */
    public long expertBytes(int e) {
        return gate[e].byteSize() + up[e].byteSize() + down[e].byteSize();
    }

    /** Bytes of the shared expert and its gate (0 without one). */
    public long sharedBytes() {
        return shared == null ? 0 : shared.mlp().weightBytesPerToken() + (shared.gate() == null ? 0 : shared.gate().byteSize());
    }

    public SparseMoeBlock(WeightMatrix router, WeightMatrix[] gate, WeightMatrix[] up, WeightMatrix[] down,
                          int topK, boolean normTopK) {
        this(router, null, gate, up, down, null, null, Spec.softmaxTopK(topK, normTopK));
    }

    public SparseMoeBlock(WeightMatrix router, float[] routerBias, WeightMatrix[] gate, WeightMatrix[] up, WeightMatrix[] down,
                          ExpertBiases biases, SharedExpert shared, Spec spec) {
        int topK = spec.topK();
        boolean normTopK = spec.normTopK();
        this.spec = spec;
        this.routerBias = routerBias;
        this.biases = biases;
        this.shared = shared;
        this.router = router;
        this.gate = gate;
        this.up = up;
        this.down = down;
        this.nExperts = router.rows();
        this.hidden = router.cols();
        this.inter = gate[0].rows();
        this.topK = topK;
        this.normTopK = normTopK;
    }

    public static final class Scratch {
        float[] logits = new float[0], probs = new float[0], topW = new float[0], xg = new float[0], yg = new float[0];
        int[] topIdx = new int[0], count = new int[0], first = new int[0], assignToken = new int[0], tokenSlotAssign = new int[0];
        int[] active = new int[0];
        int activeExperts;
        float[][] g = new float[0][], u = new float[0][];
        float[] gRows = new float[0], uRows = new float[0]; // [assignments, inter]: experts split by rows
        float[] sharedOut = new float[0], sharedGate = new float[0];
        final DenseMlpBlock.Scratch sharedScratch = new DenseMlpBlock.Scratch();
        final AtomicInteger next = new AtomicInteger();
        final Call call = new Call();
        final ExpertRegion experts = new ExpertRegion();

        void ensure(int n, int nExperts, int topK, int hidden, int inter, int threads) {
            if (logits.length < n * nExperts) {
                logits = new float[n * nExperts + Compute.OUTPUT_PAD];
            }
            if (probs.length < nExperts) {
                probs = new float[nExperts];
                count = new int[nExperts];
                first = new int[nExperts + 1];
                active = new int[nExperts];
            }
            int assignments = n * topK;
            if (topIdx.length < assignments) {
                topIdx = new int[assignments];
                topW = new float[assignments];
                assignToken = new int[assignments];
                tokenSlotAssign = new int[assignments];
            }
            if (xg.length < assignments * hidden) {
                xg = new float[assignments * hidden + Compute.OUTPUT_PAD];
                yg = new float[assignments * hidden + Compute.OUTPUT_PAD];
            }
            if (g.length < threads || g[0].length < n * inter) {
                g = new float[threads][n * inter + Compute.OUTPUT_PAD];
                u = new float[threads][n * inter + Compute.OUTPUT_PAD];
            }
        }
    }

    public int nExperts() {
        return nExperts;
    }

    /** Parameters of one routed expert (its gate, up and down matrices by logical shape, and its biases). */
    public long parametersPerExpert() {
        long p = (long) gate[0].rows() * gate[0].cols() + (long) up[0].rows() * up[0].cols() + (long) down[0].rows() * down[0].cols();
        if (biases != null) {
            p += biases.gate()[0].length + biases.up()[0].length + biases.down()[0].length;
        }
        return p;
    }

    public int topK() {
        return topK;
    }

    public void forward(Compute c, int layer, float[] x, int n, Scratch s, float[] out, ForwardObserver observer) {
        route(c, layer, x, n, s, observer);
        int nActive = s.activeExperts;
        Kernels kn = c.kernels();
        // experts; which worker computes which expert rows never changes results
        Call call = s.call.set(this, kn, n, nActive, s, out);
        if (c.expertParallel()) {
            // expert parallelism: each worker holds a range of experts; their tokens go there and come back as vectors
            c.dataRegion("moe.experts", s.experts.set(this, kn, layer, n, nActive, s, c.workers()));
            s.experts.clear();
        } else if (c.expertRows()) {
            // every active expert split by rows: gate/up rows (then SwiGLU on them), then down rows
            if (s.gRows.length < n * topK * inter) {
                s.gRows = new float[n * topK * inter + Compute.OUTPUT_PAD];
                s.uRows = new float[n * topK * inter + Compute.OUTPUT_PAD];
            }
            c.forRange("moe.experts.gate_up", gate[0].tiles(), call.phase(Call.GATE_UP_ROWS));
            c.forRange("moe.experts.down", down[0].tiles(), call.phase(Call.DOWN_ROWS));
        } else {
            // fork-join: each worker takes whole experts as they come (dynamic, for balance)
            s.next.set(0);
            c.forRange("moe.experts", c.workers(), call.phase(Call.EXPERTS));
        }
        call.clear();
        finish(c, x, n, s, out);
    }

    /**
     * The block's first part, before any expert runs: router logits (+ bias), the family's routing rule, and the
     * (token, slot) assignments grouped by expert, tokens ascending within an expert, their rows copied to the
     * scratch's grouped input. The experts then read that input (here, or on FFN workers as messages,
     * {@link #writeShardTokens}) and write the grouped output that {@link #finish} combines.
     */
    public void route(Compute c, int layer, float[] x, int n, Scratch s, ForwardObserver observer) {
        s.ensure(n, nExperts, topK, hidden, inter, c.workers());
        Kernels kn = c.kernels();
        // router: logits (+ bias) -> the family's routing rule -> top-k ids and weights
        c.matmul(router, x, n, s.logits);
        for (int t = 0; t < n; t++) {
            if (spec.routing() == Routing.SIGMOID_GROUPED) {
                routeGrouped(s.logits, t * nExperts, s.probs, s.topIdx, s.topW, t * topK);
                continue;
            }
            if (routerBias != null) {
                for (int e = 0; e < nExperts; e++) {
                    s.logits[t * nExperts + e] += routerBias[e];
                }
            }
            System.arraycopy(s.logits, t * nExperts, s.probs, 0, nExperts);
            if (spec.routing() == Routing.SOFTMAX_TOP_K) {
                kn.softmax(s.probs, 0, nExperts);
                selectTopK(s.probs, s.topIdx, s.topW, t * topK);
            } else {
                selectTopK(s.probs, s.topIdx, s.topW, t * topK);
                kn.softmax(s.topW, t * topK, topK);
            }
        }
        observer.onRouter(layer, s.logits, s.topIdx, n, nExperts, topK);

        // group the (token, slot) assignments by expert, tokens ascending within an expert
        Arrays.fill(s.count, 0, nExperts, 0);
        for (int a = 0; a < n * topK; a++) {
            s.count[s.topIdx[a]]++;
        }
        int nActive = 0;
        s.first[0] = 0;
        for (int e = 0; e < nExperts; e++) {
            s.first[e + 1] = s.first[e] + s.count[e];
            if (s.count[e] > 0) {
                s.active[nActive++] = e;
            }
        }
        Arrays.fill(s.count, 0, nExperts, 0);
        for (int t = 0; t < n; t++) {
            for (int j = 0; j < topK; j++) {
                int e = s.topIdx[t * topK + j];
                int a = s.first[e] + s.count[e]++;
                s.assignToken[a] = t;
                s.tokenSlotAssign[t * topK + j] = a;
                System.arraycopy(x, t * hidden, s.xg, a * hidden, hidden);
            }
        }
        s.activeExperts = nActive;
    }

    /**
     * The block's last part, once every routed expert's output rows are in the scratch's grouped output:
     * {@code out[t]} = the sum over t's experts in ascending id of weight * expert output, then the shared expert.
     */
    public void finish(Compute c, float[] x, int n, Scratch s, float[] out) {
        Call call = s.call.set(this, c.kernels(), n, s.activeExperts, s, out);
        // combine: out[t] = sum over t's experts in ascending id of weight * expert_out
        c.forRange("moe.combine", n, call.phase(Call.COMBINE));
        call.clear();
        if (shared != null) {
            // out[t] += sigmoid(gate . x[t]) * shared(x[t]), the product rounded first as HF computes it
            if (s.sharedOut.length < n * hidden) {
                s.sharedOut = new float[n * hidden + Compute.OUTPUT_PAD];
                s.sharedGate = new float[n + Compute.OUTPUT_PAD];
            }
            shared.mlp().forward(c, x, n, s.sharedScratch, s.sharedOut);
            if (shared.gate() != null) {
                c.matmul(shared.gate(), x, n, s.sharedGate);
            }
            for (int t = 0; t < n; t++) {
                float g = shared.gate() == null ? 1f : sigmoid(s.sharedGate[t]);
                for (int i = t * hidden; i < (t + 1) * hidden; i++) {
                    out[i] += shared.gate() == null ? s.sharedOut[i] : g * s.sharedOut[i];
                }
            }
        }
    }

    // ---------------------------------------------------------------- expert shards (experts [e0, e1) elsewhere)

    /** After {@link #route}: the token rows routed to expert {@code e} this forward. */
    public int routedRows(Scratch s, int e) {
        return s.first[e + 1] - s.first[e];
    }

    /** Most token rows experts {@code [e0, e1)} get from {@code tokens} tokens: each picks at most min(topK, e1 - e0) of them. */
    public int maxShardRows(int tokens, int e0, int e1) {
        return tokens * Math.min(topK, e1 - e0);
    }

    /** Floats of the message that carries experts {@code [e0, e1)} their tokens after {@link #route}: the counts, then the rows. */
    public int shardTokensFloats(Scratch s, int e0, int e1) {
        return e1 - e0 + (s.first[e1] - s.first[e0]) * hidden;
    }

    /** The largest {@link #shardTokensFloats} for a batch of {@code tokens} tokens. */
    public int maxShardTokensFloats(int tokens, int e0, int e1) {
        return e1 - e0 + maxShardRows(tokens, e0, e1) * hidden;
    }

    /**
     * Floats {@code [off, off + floats)} of experts {@code [e0, e1)}'s tokens message: each expert's token count (as a
     * float), then the rows routed to them, grouped by expert, tokens ascending.
     */
    public void writeShardTokens(Scratch s, int e0, int e1, int off, MemorySegment dst, long dstOff, int floats) {
        int k = e1 - e0;
        int i = off, end = off + floats;
        for (; i < Math.min(k, end); i++, dstOff += Float.BYTES) {
            dst.set(ValueLayout.JAVA_FLOAT, dstOff, (float) (s.first[e0 + i + 1] - s.first[e0 + i]));
        }
        if (i < end) {
            MemorySegment.copy(s.xg, s.first[e0] * hidden + (i - k), dst, ValueLayout.JAVA_FLOAT, dstOff, end - i);
        }
    }

    /** Floats {@code [off, off + floats)} of experts {@code [e0, ...)}'s output rows, into the grouped output where a local run writes them. */
    public void readShardOutput(Scratch s, int e0, int off, MemorySegment src, long srcOff, int floats) {
        MemorySegment.copy(src, ValueLayout.JAVA_FLOAT, srcOff, s.yg, s.first[e0] * hidden + off, floats);
    }

    /**
     * Where experts run away from their tokens: the tokens message received ({@link #writeShardTokens}'s layout),
     * the experts' work buffers and output rows. Grown only, so a steady state allocates nothing.
     */
    public static final class Shard {
        float[] inbox = new float[0];
        float[] g = new float[0], u = new float[0], y = new float[0];
        int rows;

        /** Room for experts {@code [e0, e1)} of {@code block} on up to {@code tokens} tokens. */
        public void ensure(SparseMoeBlock block, int tokens, int e0, int e1) {
            int rows = block.maxShardRows(tokens, e0, e1), k = e1 - e0;
            if (inbox.length < k + rows * block.hidden + Compute.OUTPUT_PAD) {
                inbox = new float[k + rows * block.hidden + Compute.OUTPUT_PAD];
            }
            if (y.length < rows * block.hidden + Compute.OUTPUT_PAD) {
                y = new float[rows * block.hidden + Compute.OUTPUT_PAD];
            }
            if (g.length < rows * block.inter + Compute.OUTPUT_PAD) {
                g = new float[rows * block.inter + Compute.OUTPUT_PAD];
                u = new float[rows * block.inter + Compute.OUTPUT_PAD];
            }
        }

        /** Takes floats {@code [off, off + floats)} of a tokens message. */
        public void readTokens(int off, MemorySegment src, long srcOff, int floats) {
            MemorySegment.copy(src, ValueLayout.JAVA_FLOAT, srcOff, inbox, off, floats);
        }

        /** No rows this time (the experts had no tokens). */
        public void empty() {
            rows = 0;
        }

        /** Output rows computed by the last {@link SparseMoeBlock#runShard}. */
        public int rows() {
            return rows;
        }

        /** Floats {@code [off, off + floats)} of the output rows. */
        public void writeOutput(int off, MemorySegment dst, long dstOff, int floats) {
            MemorySegment.copy(y, off, dst, ValueLayout.JAVA_FLOAT, dstOff, floats);
        }
    }

    /**
     * Runs experts {@code [e0, e1)} on the rows of {@code b}'s tokens message, expert by expert in ascending id, each on
     * all of its rows at once (the same calls, on the same rows, as a local run): the output rows land in {@code b}
     * in the message's order. Returns the rows.
     */
    public int runShard(Kernels kn, int e0, int e1, Shard b) {
        int k = e1 - e0, a = 0;
        for (int j = 0; j < k; j++) {
            int m = (int) b.inbox[j];
            if (m > 0) {
                runExpert(kn, e0 + j, b.inbox, k + a * hidden, m, b.g, b.u, b.y, a * hidden);
                a += m;
            }
        }
        b.rows = a;
        return a;
    }

    private static float sigmoid(float x) {
        return 1f / (1f + (float) Math.exp(-x));
    }

    /** Adds expert {@code e}'s gate/up biases to rows {@code [r0, r1)} of {@code m} rows, then gates them into {@code g}. */
    private void activate(Kernels kn, int e, float[] g, int gOff, float[] u, int uOff, int m, int stride, int r0, int r1) {
        int len = r1 - r0;
        for (int a = 0; a < m; a++) {
            int go = gOff + a * stride + r0, uo = uOff + a * stride + r0;
            if (biases != null) {
                float[] bg = biases.gate()[e], bu = biases.up()[e];
                for (int i = 0; i < len; i++) {
                    g[go + i] += bg[r0 + i];
                    u[uo + i] += bu[r0 + i];
                }
            }
            if (spec.activation() == Activation.SWIGLU) {
                kn.siluMul(g, go, u, uo, g, go, len);
            } else {
                float alpha = spec.alpha(), limit = spec.limit();
                for (int i = 0; i < len; i++) {
                    float gate = Math.min(g[go + i], limit);
                    float up = Math.max(Math.min(u[uo + i], limit), -limit);
                    float glu = gate * sigmoid(gate * alpha);
                    g[go + i] = (up + 1f) * glu;
                }
            }
        }
    }

    /** Adds expert {@code e}'s down bias to rows {@code [r0, r1)} of {@code m} output rows of {@code hidden}. */
    private void addDownBias(int e, float[] y, int yOff, int m, int r0, int r1) {
        if (biases != null) {
            float[] bd = biases.down()[e];
            for (int a = 0; a < m; a++) {
                for (int i = r0; i < r1; i++) {
                    y[yOff + a * hidden + i] += bd[i];
                }
            }
        }
    }

    /** The arguments of one forward's parallel regions, reused so a decode step allocates nothing. */
    static final class Call extends PhasedTask {
        static final int EXPERTS = 0;
        static final int COMBINE = 1;
        static final int GATE_UP_ROWS = 2;
        static final int DOWN_ROWS = 3;

        private SparseMoeBlock block;
        private Kernels kernels;
        private Scratch scratch;
        private float[] out;
        private int n;
        private int activeExperts;

        Call set(SparseMoeBlock block, Kernels kernels, int n, int activeExperts, Scratch scratch, float[] out) {
            this.block = block;
            this.kernels = kernels;
            this.n = n;
            this.activeExperts = activeExperts;
            this.scratch = scratch;
            this.out = out;
            return this;
        }

        @Override
        void clear() {
            block = null;
            scratch = null;
            out = null;
        }

        @Override
        void run(int phase, int worker, int start, int end) {
            switch (phase) {
                case EXPERTS -> block.runExperts(this, worker);
                case COMBINE -> block.combine(this, start, end);
                case GATE_UP_ROWS -> block.gateUpRows(this, start, end);
                default -> block.downRows(this, start, end);
            }
        }
    }

    private void runExperts(Call call, int worker) {
        Scratch s = call.scratch;
        Kernels kn = call.kernels;
        float[] g = s.g[worker], u = s.u[worker];
        for (int i; (i = s.next.getAndIncrement()) < call.activeExperts; ) {
            int e = s.active[i];
            int a0 = s.first[e], m = s.first[e + 1] - a0;
            runExpert(kn, e, s.xg, a0 * hidden, m, g, u, s.yg, a0 * hidden);
        }
    }

    /** Gate and up rows of tiles {@code [t0, t1)} of every active expert, then SwiGLU on those rows. */
    private void gateUpRows(Call call, int t0, int t1) {
        Scratch s = call.scratch;
        Kernels kn = call.kernels;
        int r0 = t0 * gate[0].tileRows(), r1 = Math.min(t1 * gate[0].tileRows(), inter);
        for (int i = 0; i < call.activeExperts; i++) {
            int e = s.active[i];
            checkTiles(gate[e], gate[0]);
            checkTiles(up[e], gate[0]);
            int a0 = s.first[e], m = s.first[e + 1] - a0;
            kn.matmul(gate[e], s.xg, a0 * hidden, hidden, m, s.gRows, a0 * inter, inter, r0, r1);
            kn.matmul(up[e], s.xg, a0 * hidden, hidden, m, s.uRows, a0 * inter, inter, r0, r1);
            activate(kn, e, s.gRows, a0 * inter, s.uRows, a0 * inter, m, inter, r0, r1);
        }
    }

    /** Down rows of tiles {@code [t0, t1)} of every active expert. */
    private void downRows(Call call, int t0, int t1) {
        Scratch s = call.scratch;
        int r0 = t0 * down[0].tileRows(), r1 = Math.min(t1 * down[0].tileRows(), hidden);
        for (int i = 0; i < call.activeExperts; i++) {
            int e = s.active[i];
            checkTiles(down[e], down[0]);
            int a0 = s.first[e], m = s.first[e + 1] - a0;
            call.kernels.matmul(down[e], s.gRows, a0 * inter, inter, m, s.yg, a0 * hidden, hidden, r0, r1);
            addDownBias(e, s.yg, a0 * hidden, m, r0, r1);
        }
    }

    private static void checkTiles(WeightMatrix w, WeightMatrix first) {
        if (w.tileRows() != first.tileRows()) {
            throw new IllegalStateException("experts split by rows need one tile height for all experts: " + w.tileRows() + " vs " + first.tileRows());
        }
    }

    /** Experts {@code [e0, e1)}: runs the active ones of them on the coordinator's scratch. */
    private void runExpertRange(Kernels kn, Scratch s, int e0, int e1) {
        float[] g = s.g[0], u = s.u[0];
        for (int e = e0; e < e1; e++) {
            int a0 = s.first[e], m = s.first[e + 1] - a0;
            if (m > 0) {
                runExpert(kn, e, s.xg, a0 * hidden, m, g, u, s.yg, a0 * hidden);
            }
        }
    }

    /** Expert {@code e} on {@code m} token rows of {@code x} at {@code xOff}: {@code y = down(silu(gate x) * up x)}. */
    private void runExpert(Kernels kn, int e, float[] x, int xOff, int m, float[] g, float[] u, float[] y, int yOff) {
        kn.matmul(gate[e], x, xOff, hidden, m, g, 0, inter, 0, inter);
        kn.matmul(up[e], x, xOff, hidden, m, u, 0, inter, 0, inter);
        if (biases == null && spec.activation() == Activation.SWIGLU) {
            kn.siluMul(g, 0, u, 0, g, 0, m * inter); // one call over all rows: the same elementwise result
        } else {
            activate(kn, e, g, 0, u, 0, m, inter, 0, inter);
        }
        kn.matmul(down[e], g, 0, inter, m, y, yOff, hidden, 0, hidden);
        addDownBias(e, y, yOff, m, 0, hidden);
    }

    /**
     * The experts of one layer under expert parallelism: worker {@code w} holds experts
     * {@code [E*w/W, E*(w+1)/W)}. The coordinator sends each worker one message: its experts' token counts, then
     * the token rows routed to them (grouped by expert, tokens ascending, as the coordinator grouped them); the
     * worker runs its experts on its own buffers and sends back their output rows in the same order, which land in
     * the coordinator's grouped output where a one-worker step would have written them. The combine then sums
     * them in ascending expert id, so the result is the same bits for any number of workers.
     *
     * <p>Routing rarely splits a step's experts evenly, so the split is balanced at run time without changing what
     * is computed: a worker takes its experts first to last, and the coordinator, once its own range is done, takes
     * the others' from last to first; each expert is claimed once (a compare-and-set per expert and run), so the
     * worker's share is a prefix of its range and its message carries just those rows. A worker that is slow or
     * descheduled loses its tail to the coordinator instead of holding the step.
     */
    static final class ExpertRegion implements DataRegion {
        private SparseMoeBlock block;
        private Kernels kernels;
        private Scratch s;
        private int layer;
        private int n;
        private int activeExperts;
        private int workers;
        // kept after the region (clear() drops the rest): a late worker reads only these and its own buffers until a
        // claim succeeds, which a late worker's never does
        private int nExperts;
        private int hidden;
        /** Per worker >= 1, its own buffers (index 0 unused: the coordinator works in the shared scratch). */
        private Shard[] local = new Shard[0];
        /** Per expert: the stamp of the region run that claimed it (claims only move forward). */
        private final PartClaims claims = new PartClaims(0);
        /** On the coordinator, per worker: it took over every expert of that worker in this run. */
        private boolean[] taken = new boolean[0];

        ExpertRegion set(SparseMoeBlock block, Kernels kernels, int layer, int n, int activeExperts, Scratch s, int workers) {
            this.block = block;
            this.kernels = kernels;
            this.layer = layer;
            this.n = n;
            this.activeExperts = activeExperts;
            this.s = s;
            this.workers = workers;
            this.nExperts = block.nExperts;
            this.hidden = block.hidden;
            claims.ensure(block.nExperts);
            if (taken.length < workers) {
                taken = new boolean[workers];
            }
            Arrays.fill(taken, false); // set by the coordinator's part, when it has one
            // the workers' buffers, sized for this batch's largest messages (grown here, on the coordinator, before
            // the region's messages publish them; a steady state allocates nothing)
            if (local.length < workers) {
                local = Arrays.copyOf(local, workers);
            }
            for (int w = 1; w < workers; w++) {
                Shard b = local[w] != null ? local[w] : new Shard();
                b.ensure(block, n, first(w), first(w + 1));
                local[w] = b;
            }
            return this;
        }

        void clear() {
            block = null;
            s = null;
        }

        private int first(int worker) {
            return nExperts * worker / workers;
        }

        @Override
        public void declare(StepGraph g, int region, int maxTokens) {
            for (int w = 0; w < workers; w++) {
                int e0 = first(w), e1 = first(w + 1);
                if (e0 == e1) {
                    continue;
                }
                // the coordinator may take over the tail of any worker's range, so it holds every expert
                int group = w == 0 ? g.weightGroup("layer " + layer + " experts 0-" + (block.nExperts - 1))
                        : g.weightGroup("layer " + layer + " experts " + e0 + "-" + (e1 - 1));
                g.owns(w, group);
                g.part(region, w, group);
                if (w > 0) {
                    g.message("moe.l" + layer + ".tokens", region, 0, w, MessageSpec.Kind.INPUT, block.maxShardTokensFloats(maxTokens, e0, e1));
                    g.message("moe.l" + layer + ".out", region, w, 0, MessageSpec.Kind.OUTPUT, block.maxShardRows(maxTokens, e0, e1) * block.hidden);
                }
            }
        }

        @Override
        public void runAll() {
            block.runExpertRange(kernels, s, 0, block.nExperts);
        }

        @Override
        public void compute(int worker, long stamp) {
            int e0 = first(worker), e1 = first(worker + 1);
            if (worker == 0) {
                block.runExpertRange(kernels, s, e0, e1);
                // then the tails of the other workers' ranges, last expert first, until meeting their owner
                for (int w = 1; w < workers; w++) {
                    taken[w] = true;
                    for (int e = first(w + 1) - 1; e >= first(w); e--) {
                        int a0 = s.first[e], m = s.first[e + 1] - a0;
                        if (m == 0) {
                            continue;
                        }
                        if (!claims.claim(e, stamp)) {
                            taken[w] = false;
                            break;
                        }
                        block.runExpert(kernels, e, s.xg, a0 * block.hidden, m, s.g[0], s.u[0], s.yg, a0 * block.hidden);
                    }
                }
                return;
            }
            // its own range, first expert first, until meeting the coordinator coming from the end: what it computed
            // is a prefix of the range, and so are the output rows it sends back. (runShard's loop with a claim
            // first: a late worker must not read `block` before a claim succeeds, as the region may have been cleared.)
            Shard b = local[worker];
            int k = e1 - e0, a = 0;
            for (int j = 0; j < k; j++) {
                int m = (int) b.inbox[j];
                if (m > 0) {
                    if (!claims.claim(e0 + j, stamp)) {
                        break;
                    }
                    block.runExpert(kernels, e0 + j, b.inbox, k + a * block.hidden, m, b.g, b.u, b.y, a * block.hidden);
                    a += m;
                }
            }
            b.rows = a;
        }

        @Override
        public boolean takenOver(MessageSpec m) {
            return taken[m.from()];
        }

        @Override
        public int payloadFloats(MessageSpec m) {
            if (m.kind() == MessageSpec.Kind.INPUT) {
                return block.shardTokensFloats(s, first(m.to()), first(m.to() + 1));
            }
            return local[m.from()].rows * hidden;
        }

        @Override
        public void write(MessageSpec m, int off, MemorySegment dst, long dstOff, int floats) {
            if (m.kind() == MessageSpec.Kind.OUTPUT) {
                local[m.from()].writeOutput(off, dst, dstOff, floats);
            } else {
                block.writeShardTokens(s, first(m.to()), first(m.to() + 1), off, dst, dstOff, floats);
            }
        }

        @Override
        public void read(MessageSpec m, int off, MemorySegment src, long srcOff, int floats, int total) {
            if (m.kind() == MessageSpec.Kind.INPUT) {
                local[m.to()].readTokens(off, src, srcOff, floats);
            } else {
                block.readShardOutput(s, first(m.from()), off, src, srcOff, floats);
            }
        }
    }

    private void combine(Call call, int t0, int t1) {
        Scratch s = call.scratch;
        float[] out = call.out;
        for (int t = t0; t < t1; t++) {
            Arrays.fill(out, t * hidden, (t + 1) * hidden, 0f);
            for (int e = 0, done = 0; done < topK; e++) {
                for (int j = 0; j < topK; j++) {
                    if (s.topIdx[t * topK + j] == e) {
                        call.kernels.axpy(s.topW[t * topK + j], s.yg, s.tokenSlotAssign[t * topK + j] * hidden, out, t * hidden, hidden);
                        done++;
                    }
                }
            }
        }
    }

    /**
     * Top-k of {@code probs} by descending value (ties: lower expert id first), written at {@code off};
     * weights renormalized to sum 1 when {@code norm_topk_prob}.
     */
    private void selectTopK(float[] probs, int[] idx, float[] w, int off) {
        for (int j = 0; j < topK; j++) {
            int best = -1;
            for (int e = 0; e < nExperts; e++) {
                if (isTaken(idx, off, j, e)) {
                    continue;
                }
                if (best < 0 || probs[e] > probs[best]) {
                    best = e;
                }
            }
            idx[off + j] = best;
            w[off + j] = probs[best];
        }
        if (normTopK && spec.routing() != Routing.SIGMOID_GROUPED) {
            float sum = 0f;
            for (int j = 0; j < topK; j++) {
                sum += w[off + j];
            }
            for (int j = 0; j < topK; j++) {
                w[off + j] /= sum;
            }
        }
    }

    /** {@link Routing#SIGMOID_GROUPED} for one token's logits at {@code off}; {@code choice} is scratch of nExperts. */
    private void routeGrouped(float[] logits, int off, float[] choice, int[] idx, float[] w, int wOff) {
        int groups = spec.groups(), per = nExperts / groups;
        for (int e = 0; e < nExperts; e++) {
            choice[e] = sigmoid(logits[off + e]) + routerBias[e];
        }
        // each group's score: the sum of its two best choices; keep the topKGroup best groups (ties: lower group)
        long keep = 0;
        for (int k = 0; k < spec.topKGroup(); k++) {
            int best = -1;
            float bestScore = 0f;
            for (int g = 0; g < groups; g++) {
                if ((keep >>> g & 1) != 0) {
                    continue;
                }
                float a = Float.NEGATIVE_INFINITY, b = Float.NEGATIVE_INFINITY;
                for (int e = g * per; e < (g + 1) * per; e++) {
                    if (choice[e] > a) {
                        b = a;
                        a = choice[e];
                    } else if (choice[e] > b) {
                        b = choice[e];
                    }
                }
                float score = per == 1 ? a : a + b;
                if (best < 0 || score > bestScore) {
                    best = g;
                    bestScore = score;
                }
            }
            keep |= 1L << best;
        }
        for (int e = 0; e < nExperts; e++) {
            if ((keep >>> (e / per) & 1) == 0) {
                choice[e] = 0f;
            }
        }
        selectTopK(choice, idx, w, wOff); // ids by choice; normTopK is handled below on the scores
        float sum = 0f;
        for (int j = 0; j < topK; j++) {
            w[wOff + j] = sigmoid(logits[off + idx[wOff + j]]);
            sum += w[wOff + j];
        }
        for (int j = 0; j < topK; j++) {
            if (spec.normTopK()) {
                w[wOff + j] /= sum + 1e-20f;
            }
            w[wOff + j] *= spec.routedScaling();
        }
    }

    private static boolean isTaken(int[] idx, int off, int count, int e) {
        for (int j = 0; j < count; j++) {
            if (idx[off + j] == e) {
                return true;
            }
        }
        return false;
    }
}
