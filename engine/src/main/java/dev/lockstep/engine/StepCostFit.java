package dev.lockstep.engine;

import java.util.Arrays;

/**
 * Fits the scheduler's step time to what each step carries, by least squares with coefficients of at least 0:
 * {@code time = c0 + c1 * decodeTokens + c2 * decodeContextPositions + c3 * prefillTokens + c4 * prefillAttendPositions}.
 * Then it tells how much of the spread of per-token latency (each step weighted by its decode tokens, since every
 * generating session waits one step per token) the composition of the steps explains, and how much is left over:
 * the ratio of each step's time to its modelled cost. A scheduler that filled every step to the same modelled
 * cost would remove the first part at best, never the second.
 */
public final class StepCostFit implements StepListener {
    private static final int TERMS = 5;
    private static final int STRIDE = TERMS + 2;
    private double[] steps = new double[STRIDE * 1024]; // per step: the terms (1 first), the time in us, the sequences
    private int n;
    private int window; // 0: every step; else at most this many, the most recent (the oldest half is dropped when full)

    /** A fit over the most recent {@code maxSteps} steps only (the scheduler's online model: it follows drift). */
    public static StepCostFit window(int maxSteps) {
        if (maxSteps < 2 * TERMS) {
            throw new IllegalArgumentException("a window must hold at least " + 2 * TERMS + " steps, got " + maxSteps);
        }
        StepCostFit f = new StepCostFit();
        f.window = maxSteps;
        return f;
    }

    @Override
    public synchronized void onStep(int decodeTokens, long decodeContextPositions, int prefillTokens, long prefillAttendPositions,
                                    int sequences, long stepNanos) {
        if (window > 0 && n == window) {
            int drop = window / 2;
            System.arraycopy(steps, drop * STRIDE, steps, 0, (n - drop) * STRIDE);
            n -= drop;
        }
        if ((n + 1) * STRIDE > steps.length) {
            steps = Arrays.copyOf(steps, 2 * steps.length);
        }
        int o = n++ * STRIDE;
        steps[o] = 1;
        steps[o + 1] = decodeTokens;
        steps[o + 2] = decodeContextPositions;
        steps[o + 3] = prefillTokens;
        steps[o + 4] = prefillAttendPositions;
        steps[o + 5] = stepNanos / 1e3;
        steps[o + 6] = sequences;
    }

    /** Every step as a CSV row ({@code run,step,decode_tokens,...,step_us}), after {@link #CSV_HEADER}. */
    public synchronized void writeCsv(Appendable out, String run) throws java.io.IOException {
        for (int s = 0; s < n; s++) {
            int o = s * STRIDE;
            out.append(String.format(java.util.Locale.ROOT, "%s,%d,%d,%d,%d,%d,%d,%.1f%n", run, s, (long) steps[o + 1], (long) steps[o + 2],
                    (long) steps[o + 3], (long) steps[o + 4], (long) steps[o + 6], steps[o + 5]));
        }
    }

    /** The columns {@link #writeCsv} writes. */
    public static final String CSV_HEADER = "run,step,decode_tokens,decode_context_positions,prefill_tokens,prefill_attend_positions,sequences,step_us";

    /** The median time of the steps that carried decode tokens and no prefill, in microseconds (NaN when none did). */
    public double medianDecodeOnlyMicros() {
        return decodeOnlyMicros(50);
    }

    /** The {@code percentile} time of the steps that carried decode tokens and no prefill, in microseconds (NaN when none did). */
    public synchronized double decodeOnlyMicros(double percentile) {
        double[] t = new double[n];
        int k = 0;
        for (int s = 0; s < n; s++) {
            int o = s * STRIDE;
            if (steps[o + 1] > 0 && steps[o + 3] == 0) {
                t[k++] = steps[o + TERMS];
            }
        }
        if (k == 0) {
            return Double.NaN;
        }
        Arrays.sort(t, 0, k);
        return t[Math.min(k - 1, (int) Math.floor(percentile / 100 * k))];
    }

    /** Steps seen. */
    public synchronized int steps() {
        return n;
    }

    /** The steps of all of {@code runs} together (to fit one model over runs of different composition). */
    public static StepCostFit pooled(StepCostFit... runs) {
        StepCostFit all = new StepCostFit();
        for (StepCostFit r : runs) {
            synchronized (r) {
                all.steps = Arrays.copyOf(all.steps, Math.max(all.steps.length, (all.n + r.n) * STRIDE));
                System.arraycopy(r.steps, 0, all.steps, all.n * STRIDE, r.n * STRIDE);
                all.n += r.n;
            }
        }
        return all;
    }

    /** The model fitted over these steps; needs at least {@value #TERMS} steps. */
    public synchronized double[] fit() {
        if (n < TERMS) {
            throw new IllegalStateException("a fit of " + TERMS + " terms needs at least " + TERMS + " steps, got " + n);
        }
        return nonNegativeFit();
    }

    /** What the model {@code c} (from {@link #fit}, of these steps or others) explains of these steps' spread. */
    public synchronized Result explain(double[] c) {
        int decodeSteps = 0;
        for (int s = 0; s < n; s++) {
            decodeSteps += steps[s * STRIDE + 1] > 0 ? 1 : 0;
        }
        double[] time = new double[decodeSteps], cost = new double[decodeSteps], left = new double[decodeSteps], weight = new double[decodeSteps];
        for (int s = 0, k = 0; s < n; s++) {
            int o = s * STRIDE;
            if (steps[o + 1] > 0) {
                double modelled = 0;
                for (int i = 0; i < TERMS; i++) {
                    modelled += c[i] * steps[o + i];
                }
                time[k] = steps[o + TERMS];
                cost[k] = Math.max(modelled, 1e-9);
                left[k] = time[k] / cost[k];
                weight[k++] = steps[o + 1];
            }
        }
        return new Result(n, c, ratio(time, weight), ratio(cost, weight),
                new double[] {percentile(left, weight, 50), percentile(left, weight, 90), percentile(left, weight, 99)});
    }

    private static double ratio(double[] v, double[] w) {
        return percentile(v, w, 99) / percentile(v, w, 50);
    }

    /** The smallest value with at least {@code p}% of the weight at or below it. */
    static double percentile(double[] v, double[] w, double p) {
        if (v.length == 0) {
            return Double.NaN;
        }
        Integer[] order = new Integer[v.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, (x, y) -> Double.compare(v[x], v[y]));
        double total = 0;
        for (double x : w) {
            total += x;
        }
        double seen = 0;
        for (int i : order) {
            seen += w[i];
            if (seen >= total * p / 100) {
                return v[i];
            }
        }
        return v[order[order.length - 1]];
    }

    /**
     * Least squares with every coefficient at least 0 (a step never gets cheaper for carrying more): fit, drop the
     * most negative term, fit again, until none is negative.
     */
    private double[] nonNegativeFit() {
        boolean[] used = new boolean[TERMS];
        Arrays.fill(used, true);
        while (true) {
            double[][] a = new double[TERMS][TERMS + 1]; // normal equations, right-hand side in the last column
            for (int s = 0; s < n; s++) {
                int o = s * STRIDE;
                for (int i = 0; i < TERMS; i++) {
                    if (used[i]) {
                        for (int j = 0; j < TERMS; j++) {
                            a[i][j] += used[j] ? steps[o + i] * steps[o + j] : 0;
                        }
                        a[i][TERMS] += steps[o + i] * steps[o + TERMS];
                    }
                }
            }
            double[] c = solve(a);
            int worst = -1;
            for (int i = 0; i < TERMS; i++) {
                if (c[i] < 0 && (worst < 0 || c[i] < c[worst])) {
                    worst = i;
                }
            }
            if (worst < 0) {
                return c;
            }
            used[worst] = false;
        }
    }

    /** Gaussian elimination with partial pivoting; a singular system (a term never varies) gets 0 for that term. */
    private static double[] solve(double[][] a) {
        int m = a.length;
        for (int col = 0; col < m; col++) {
            int pivot = col;
            for (int r = col + 1; r < m; r++) {
                if (Math.abs(a[r][col]) > Math.abs(a[pivot][col])) {
                    pivot = r;
                }
            }
            double[] t = a[col];
            a[col] = a[pivot];
            a[pivot] = t;
            if (Math.abs(a[col][col]) < 1e-9) {
                continue;
            }
            for (int r = 0; r < m; r++) {
                if (r != col) {
                    double f = a[r][col] / a[col][col];
                    for (int k = col; k <= m; k++) {
                        a[r][k] -= f * a[col][k];
                    }
                }
            }
        }
        double[] c = new double[m];
        for (int i = 0; i < m; i++) {
            c[i] = Math.abs(a[i][i]) < 1e-9 ? 0 : a[i][m] / a[i][i];
        }
        return c;
    }

    /**
     * @param coefficients microseconds: per step, per decode token, per decode context position, per prefill token,
     *                     per prefill attended position
     * @param timeSpread   p99/p50 of step time, steps weighted by their decode tokens (per-token latency's spread)
     * @param costSpread   p99/p50 of the modelled cost, weighted the same way: the part the composition explains
     * @param leftOver     p50, p90, p99 of time / modelled cost, weighted the same way: the part it does not
     */
    public record Result(int steps, double[] coefficients, double timeSpread, double costSpread, double[] leftOver) {
        public String describe() {
            double[] c = coefficients;
            return String.format(java.util.Locale.ROOT,
                    "step time modelled as %.0f us + %.1f us per decode token + %.3f us per position a decode token attends"
                            + " + %.1f us per prefill token + %.3f us per position a prefill token attends; over %d steps, each weighted by"
                            + " its decode tokens: step time p99/p50 %.2f; modelled cost p99/p50 %.2f (what the steps carry) with"
                            + " time/modelled p50 %.2f p90 %.2f p99 %.2f (what they do not)",
                    c[0], c[1], c[2], c[3], c[4], steps, timeSpread, costSpread, leftOver[0], leftOver[1], leftOver[2]);
        }
    }
}
