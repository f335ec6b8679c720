package dev.lockstep.engine;

/**
 * The scheduler's per-token latency target ({@link EngineOptions#withTokenSloNanos}): every generating session waits
 * one step per token, so a step that carries decode tokens should cost at most the target. The step cost is modelled
 * as {@link StepCostFit} models it (per step, per decode token, per decode context position, per prefill token, per
 * prefill attended position), refitted every {@value #REFIT_EVERY} steps over the last {@value #WINDOW_STEPS}; a
 * prefill chunk is cut to what still fits (Sarathi-Serve's stall-free batching). Decode tokens are never cut: when
 * they alone cost more than the target, the step runs anyway and is counted ({@link #decodeOnlyOverTarget}). A prefill
 * that waits always gets {@value #MIN_PREFILL_TOKENS} tokens per step, so a target below the decode cost cannot
 * starve new requests. Until {@value #MIN_STEPS} steps have been seen there is no model and no cut.
 *
 * <p>Scheduler thread only, except the report (read under this object's lock).
 */
final class StepBudget {
    static final int WINDOW_STEPS = 512;
    static final int REFIT_EVERY = 32;
    static final int MIN_STEPS = 64;
    static final int MIN_PREFILL_TOKENS = 8;

    private final long targetNanos;
    private final double targetMicros;
    private final StepCostFit recent = StepCostFit.window(WINDOW_STEPS);
    private double[] c; // microseconds; null until fitted
    private int sinceFit;
    private long decodeOnlyOverTarget;
    private long decodeSteps;
    private long cutSteps;
    private boolean cutThisStep;

    StepBudget(long targetNanos) {
        this.targetNanos = targetNanos;
        this.targetMicros = targetNanos / 1e3;
    }

    /** What the scheduler reports: the target, the steps, how many were cut or over, the model in use. */
    record Report(long targetNanos, long decodeSteps, long decodeOnlyOverTarget, long prefillCutSteps, double[] coefficientsMicros) {
    }

    synchronized Report report() {
        return new Report(targetNanos, decodeSteps, decodeOnlyOverTarget, cutSteps, c == null ? null : c.clone());
    }

    /**
     * The most of {@code want} prefill tokens a sequence whose cache holds {@code context} positions may add to a step
     * that already carries the given load.
     */
    int prefillAllowance(int decodeTokens, long decodeContext, int prefillTokens, long prefillAttend, long context, int want) {
        if (c == null || decodeTokens == 0 || want == 0) {
            return want;
        }
        int lo = 0;
        int hi = want;
        while (lo < hi) {
            int mid = (lo + hi + 1) >>> 1;
            double cost = cost(decodeTokens, decodeContext, prefillTokens + mid, prefillAttend + mid * context + (long) mid * (mid - 1) / 2);
            if (cost <= targetMicros) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        int floor = prefillTokens == 0 ? Math.min(want, MIN_PREFILL_TOKENS) : 0;
        int allowed = Math.max(lo, floor);
        if (allowed < want) {
            cutThisStep = true;
        }
        return allowed;
    }

    private double cost(int decodeTokens, long decodeContext, int prefillTokens, long prefillAttend) {
        return c[0] + c[1] * decodeTokens + c[2] * decodeContext + c[3] * prefillTokens + c[4] * prefillAttend;
    }

    /** After each step: its composition and measured time. */
    void record(int decodeTokens, long decodeContext, int prefillTokens, long prefillAttend, int sequences, long stepNanos) {
        recent.onStep(decodeTokens, decodeContext, prefillTokens, prefillAttend, sequences, stepNanos);
        synchronized (this) {
            if (decodeTokens > 0) {
                decodeSteps++;
                if (prefillTokens == 0 && stepNanos > targetNanos) {
                    decodeOnlyOverTarget++;
                }
            }
            if (cutThisStep) {
                cutSteps++;
                cutThisStep = false;
            }
        }
        if (++sinceFit >= REFIT_EVERY && recent.steps() >= MIN_STEPS) {
            double[] fitted = recent.fit();
            synchronized (this) {
                c = fitted;
            }
            sinceFit = 0;
        }
    }
}
