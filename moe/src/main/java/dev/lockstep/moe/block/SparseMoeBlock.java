package dev.lockstep.moe.block;

import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.WeightMatrix;
import dev.lockstep.moe.ForwardObserver;

import java.util.Arrays;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Top-k routed SwiGLU experts (HF {@code Qwen3MoeSparseMoeBlock}): router logits, softmax in float32, top-k,
 * optional renormalization of the k weights, then each selected expert runs on all of its tokens at once
 * (tokens grouped by expert, matrix-matrix), and each token's output is summed over its experts in
 * ascending expert id, as HF's {@code index_add_} loop does. That fixed order makes a token's output
 * independent of its batch mates and of which worker ran which expert.
 */
public final class SparseMoeBlock {
    private final WeightMatrix router;  // [nExperts, hidden]
    private final WeightMatrix[] gate;  // [nExperts] x [inter, hidden]
    private final WeightMatrix[] up;    // [nExperts] x [inter, hidden]
    private final WeightMatrix[] down;  // [nExperts] x [hidden, inter]
    private final int nExperts;
    private final int topK;
    private final int hidden;
    private final int inter;
    private final boolean normTopK;

    /** Weight bytes one token's forward streams: the router and top-k experts (the average expert's bytes). */
    public long weightBytesPerToken() {
        long experts = 0;
        for (int e = 0; e < nExperts; e++) {
            experts += gate[e].byteSize() + up[e].byteSize() + down[e].byteSize();
        }
        return router.byteSize() + experts * topK / nExperts;
    }

    public SparseMoeBlock(WeightMatrix router, WeightMatrix[] gate, WeightMatrix[] up, WeightMatrix[] down,
                          int topK, boolean normTopK) {
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
        float[][] g = new float[0][], u = new float[0][];
        final AtomicInteger next = new AtomicInteger();
        final Call call = new Call();

        void ensure(int n, int nExperts, int topK, int hidden, int inter, int threads) {
            if (logits.length < n * nExperts) {
                logits = new float[n * nExperts];
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
                xg = new float[assignments * hidden];
                yg = new float[assignments * hidden];
            }
            if (g.length < threads || g[0].length < n * inter) {
                g = new float[threads][n * inter];
                u = new float[threads][n * inter];
            }
        }
    }

    public int nExperts() {
        return nExperts;
    }

    public int topK() {
        return topK;
    }

    public void forward(Compute c, int layer, float[] x, int n, Scratch s, float[] out, ForwardObserver observer) {
        s.ensure(n, nExperts, topK, hidden, inter, c.pool().threads());
        Kernels kn = c.kernels();
        // router: logits -> softmax (float32) -> top-k -> renormalize
        c.matmul(router, x, n, s.logits);
        for (int t = 0; t < n; t++) {
            System.arraycopy(s.logits, t * nExperts, s.probs, 0, nExperts);
            kn.softmax(s.probs, 0, nExperts);
            selectTopK(s.probs, s.topIdx, s.topW, t * topK);
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

        // experts: each worker takes whole experts (dynamic, for balance); the assignment never changes results
        s.next.set(0);
        Call call = s.call.set(this, kn, n, nActive, s, out);
        c.pool().forRange(c.pool().threads(), call.phase(Call.EXPERTS));
        // combine: out[t] = sum over t's experts in ascending id of weight * expert_out
        c.pool().forRange(n, call.phase(Call.COMBINE));
        call.clear();
    }

    /** The arguments of one forward's parallel regions, reused so a decode step allocates nothing. */
    static final class Call extends PhasedTask {
        static final int EXPERTS = 0;
        static final int COMBINE = 1;

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
            if (phase == EXPERTS) {
                block.runExperts(this, worker);
            } else {
                block.combine(this, start, end);
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
            kn.matmul(gate[e], s.xg, a0 * hidden, hidden, m, g, 0, inter, 0, inter);
            kn.matmul(up[e], s.xg, a0 * hidden, hidden, m, u, 0, inter, 0, inter);
            kn.siluMul(g, 0, u, 0, g, 0, m * inter);
            kn.matmul(down[e], g, 0, inter, m, s.yg, a0 * hidden, hidden, 0, hidden);
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
        if (normTopK) {
            float sum = 0f;
            for (int j = 0; j < topK; j++) {
                sum += w[off + j];
            }
            for (int j = 0; j < topK; j++) {
                w[off + j] /= sum;
            }
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
