package dev.lockstep.cli;

import dev.lockstep.engine.AgenticBench;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.engine.StepCostFit;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "agentic", mixinStandardHelpOptions = true, description = {
        "The agentic workload: root agents share a long system prompt; each turn appends a tool result and",
        "generates, then forks subagents that run one turn and close. Runs it with the prefix cache on and off",
        "and with a single root session (after an unmeasured warm-up run), each on a fresh engine, and prints",
        "TTFT per turn, per-token latency percentiles (HdrHistogram), aggregate tok/s, prefix hit rate and",
        "peak KV pages as markdown tables."})
final class AgenticBenchCommand extends LoadingCommand implements Callable<Integer> {
    @picocli.CommandLine.Mixin
    KvOptions kvOptions = new KvOptions();

    @Option(names = "--sessions", defaultValue = "8", description = "Root agents running at once (default ${DEFAULT-VALUE}).")
    int sessions;

    @Option(names = "--system-tokens", defaultValue = "1024", description = "Shared system prompt length (default ${DEFAULT-VALUE}).")
    int systemTokens;

    @Option(names = "--turns", defaultValue = "6", description = "Turns per root agent (default ${DEFAULT-VALUE}).")
    int turns;

    @Option(names = "--tool-tokens", defaultValue = "128", description = "Tokens of each tool result (default ${DEFAULT-VALUE}).")
    int toolTokens;

    @Option(names = "--gen-tokens", defaultValue = "48", description = "Tokens each call generates (default ${DEFAULT-VALUE}).")
    int genTokens;

    @Option(names = "--fanout", defaultValue = "2", description = "Subagents forked per turn (default ${DEFAULT-VALUE}).")
    int fanout;

    @Option(names = "--batch-tokens", defaultValue = "" + EngineOptions.DEFAULT_BATCH_TOKENS,
            description = "Most tokens per scheduler step (default ${DEFAULT-VALUE}).")
    int batchTokens;

    @Option(names = "--threads", paramLabel = "N", description = "Compute threads (default: available processors).")
    Integer threads;

    @Option(names = "--step-log", paramLabel = "FILE",
            description = "Also write every scheduler step of the three runs as CSV: what it carried and how long it took.")
    java.nio.file.Path stepLog;

    @Option(names = "--token-slo-ms", paramLabel = "MS|Fx", description = {
            "A per-token latency target for the runs: MS milliseconds, or Fx = F times the median decode-only step of a first",
            "cache-on run without a target (that run is reported too). Steps carrying decode tokens take prefill only up to",
            "what the online step-cost model says fits (EngineOptions.withTokenSloNanos)."})
    String tokenSlo;

    @Option(names = "--seed", defaultValue = "1", description = "Seed of the token ids (default ${DEFAULT-VALUE}).")
    long seed;

    @Override
    public Integer call() {
        if (sessions < 1 || systemTokens < 1 || turns < 1 || toolTokens < 1 || genTokens < 1 || fanout < 0 || batchTokens < 1) {
            throw new IllegalArgumentException("need --sessions, --system-tokens, --turns, --tool-tokens, --gen-tokens, --batch-tokens >= 1"
                    + " and --fanout >= 0");
        }
        AgenticBench.Workload w = new AgenticBench.Workload(sessions, systemTokens, turns, toolTokens, genTokens, fanout, seed);
        java.io.Writer csv = null;
        if (stepLog != null) { // opened first: a path that cannot be written fails now, not after the runs
            try {
                csv = java.nio.file.Files.newBufferedWriter(stepLog);
            } catch (java.io.IOException e) {
                throw new LockstepException("cannot write the step log " + stepLog + ": " + e);
            }
        }
        int t = threads != null ? threads : defaultThreads();
        checkThreads(t);
        EngineOptions base = kvOptions.apply(new EngineOptions(t, EngineOptions.KernelChoice.PROVIDER, loadOptions()).withBatchTokens(batchTokens));
        // warm-up: the JIT compiles the batched paths before anything is measured
        try (Engine engine = loadEngine(base)) {
            checkContext(engine, w);
            AgenticBench.run(engine, new AgenticBench.Workload(Math.min(4, sessions), Math.min(256, systemTokens), 2, toolTokens, genTokens,
                    fanout, seed + 1));
        }
        AgenticBench.Report baseline = null;
        double sloMs = 0;
        String sloWhy = "";
        if (tokenSlo != null) {
            String spec = tokenSlo.strip();
            try {
                if (spec.endsWith("x")) {
                    double factor = Double.parseDouble(spec.substring(0, spec.length() - 1));
                    baseline = runOnce(base.withPrefixCache(true), w);
                    double median = baseline.stepCosts().medianDecodeOnlyMicros() / 1e3;
                    if (!(median > 0)) {
                        throw new IllegalArgumentException("--token-slo-ms " + spec + ": the calibration run had no decode-only step");
                    }
                    sloMs = factor * median;
                    sloWhy = String.format(Locale.ROOT, " = %s the median decode-only step (%.3f ms) of the cache-on run without a target", spec, median);
                } else {
                    sloMs = Double.parseDouble(spec);
                }
            } catch (NumberFormatException e) {
                throw new IllegalArgumentException("--token-slo-ms takes milliseconds or a factor such as 1.5x, got '" + tokenSlo + "'");
            }
            if (!(sloMs > 0)) {
                throw new IllegalArgumentException("--token-slo-ms must be positive, got " + tokenSlo);
            }
            base = base.withTokenSloNanos(Math.round(sloMs * 1e6));
        }
        AgenticBench.Report on = runOnce(base.withPrefixCache(true), w);
        Engine.TokenSloReport onSlo = lastSlo;
        String onPools = lastPools;
        AgenticBench.Report off = runOnce(base.withKvDiskBytes(0).withPrefixCache(false), w);
        Engine.TokenSloReport offTarget = lastSlo;
        AgenticBench.Report single = runOnce(base.withPrefixCache(true), w.withSessions(1));
        // decode alone: every session generating at once vs one session, 15 alternating pairs; the ratio is the
        // median of the pairs' ratios (a one-session run is ~20 ms: a host hiccup moves it, its pair moves with it)
        int pairs = 15;
        double[] decodeMany = new double[pairs], decodeOne = new double[pairs], pairRatio = new double[pairs];
        try (Engine engine = loadEngine(base)) {
            AgenticBench.decodeTokensPerSecond(engine, sessions, 64, 128, seed); // warm-up
            AgenticBench.decodeTokensPerSecond(engine, 1, 64, 128, seed);
            for (int i = 0; i < pairs; i++) {
                decodeMany[i] = AgenticBench.decodeTokensPerSecond(engine, sessions, 64, 128, seed + i);
                decodeOne[i] = AgenticBench.decodeTokensPerSecond(engine, 1, 64, 128, seed + i);
                pairRatio[i] = decodeMany[i] / decodeOne[i];
            }
        }
        java.util.Arrays.sort(decodeMany);
        java.util.Arrays.sort(decodeOne);
        java.util.Arrays.sort(pairRatio);

        // disaggregated forwards run on the plan's workers: --threads sizes nothing there
        String how = loadOptions().execution().isDisaggregated() ? loadOptions().execution().toString() : t + " threads";
        out().printf(Locale.ROOT, "%s, %s, %d root sessions x %d turns, system %d, tool %d, gen %d tokens, fanout %d, batch budget %d tokens%n%n",
                model.getFileName(), how, sessions, turns, systemTokens, toolTokens, genTokens, fanout, batchTokens);
        out().printf(Locale.ROOT, "| run | roots | prefix cache | TTFT p50 ms | TTFT p99 ms | token p50 ms | p99 | p999 | p99/p50 | aggregate tok/s | prefix hit | peak KV pages (MB) | steps | step p50 / p99 ms | step tokens p50 / p99 |%n");
        out().printf(Locale.ROOT, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|%n");
        if (baseline != null) {
            row("cache on, no target", baseline);
        }
        row(tokenSlo != null ? "cache on, target" : "cache on", on);
        row(tokenSlo != null ? "cache off, target" : "cache off", off);
        row("single session", single);
        out().printf(Locale.ROOT, "%n| turn | root TTFT p50 ms on | off | on/off speed-up | root TTFT p99 ms on | off | subagent TTFT p50 ms on | off |%n");
        out().printf(Locale.ROOT, "|---:|---:|---:|---:|---:|---:|---:|---:|%n");
        for (int turn = 0; turn < turns; turn++) {
            double p50On = ms(on.rootTtftByTurn()[turn], 50), p50Off = ms(off.rootTtftByTurn()[turn], 50);
            out().printf(Locale.ROOT, "| %d | %.2f | %.2f | %.1fx | %.2f | %.2f | %.2f | %.2f |%n", turn, p50On, p50Off, p50Off / p50On,
                    ms(on.rootTtftByTurn()[turn], 99), ms(off.rootTtftByTurn()[turn], 99),
                    ms(on.subagentTtftByTurn()[turn], 50), ms(off.subagentTtftByTurn()[turn], 50));
        }
        double ttftRatio = ms(off.allTtft(), 50) / ms(on.allTtft(), 50);
        double batching = pairRatio[pairs / 2];
        out().printf(Locale.ROOT, "%ndecode only (64-token contexts, 128 new tokens each, %d alternating pairs): %d sessions at once %.0f tok/s aggregate"
                + " (median), 1 session %.0f tok/s (median): %.2fx (median of the pairs' ratios, %.2f-%.2f); whole workload %d roots / 1: %.2fx%n",
                pairs, sessions, decodeMany[pairs / 2], decodeOne[pairs / 2], batching, pairRatio[0], pairRatio[pairs - 1],
                sessions, on.tokensPerSecond() / single.tokensPerSecond());
        double jitter = ms(on.interToken(), 99) / ms(on.interToken(), 50);
        if (tokenSlo != null) {
            out().printf(Locale.ROOT, "%ntoken latency target %.3f ms%s:%n", sloMs, sloWhy);
            sloLine("cache on", on, onSlo, sloMs);
            sloLine("cache off", off, offTarget, sloMs);
            if (baseline != null) {
                double p50 = baseline.stepCosts().decodeOnlyMicros(50) / 1e3, p99 = baseline.stepCosts().decodeOnlyMicros(99) / 1e3;
                out().printf(Locale.ROOT, "- without the target (cache on): token p99/p50 %.2f; with it %.2f. The floor: steps carrying decode tokens"
                                + " and nothing else took p50 %.3f ms, p99 %.3f ms (p99/p50 %.2f): no chunking of prefill makes a step steadier than that%n",
                        ms(baseline.interToken(), 99) / ms(baseline.interToken(), 50), jitter, p50, p99, p99 / p50);
            }
        }
        if (!onPools.isEmpty()) {
            out().printf(Locale.ROOT, "%ndisaggregated pools (cache-on run): %s%n", onPools);
        }
        out().printf(Locale.ROOT, "%nTTFT p50 off/on: %.1fx (target >= 5); aggregate decode tok/s %d sessions / 1: %.2fx (target >= 1.6); token p99/p50 with the cache: %.2f (target <= 1.5)%n",
                ttftRatio, sessions, batching, jitter);
        if (csv != null) {
            try (java.io.Writer log = csv) {
                log.write(StepCostFit.CSV_HEADER + System.lineSeparator());
                on.stepCosts().writeCsv(log, "cache on");
                off.stepCosts().writeCsv(log, "cache off");
                single.stepCosts().writeCsv(log, "single session");
            } catch (java.io.IOException e) {
                throw new LockstepException("cannot write the step log " + stepLog + ": " + e);
            }
            out().printf(Locale.ROOT, "%nsteps written to %s%n", stepLog);
        }
        StepCostFit all = StepCostFit.pooled(on.stepCosts(), off.stepCosts(), single.stepCosts());
        if (all.steps() >= 5 && on.stepCosts().steps() > 0) {
            out().printf(Locale.ROOT, "%nwhere the token p99/p50 with the cache comes from: %s%n", on.stepCosts().explain(all.fit()).describe());
        }
        return 0;
    }

    private void checkContext(Engine engine, AgenticBench.Workload w) {
        if (w.maxContext() > engine.model().maxPositions()) {
            throw new IllegalArgumentException("the workload needs " + w.maxContext() + " positions; the model holds "
                    + engine.model().maxPositions() + " (max_position_embeddings): fewer turns or tokens");
        }
    }

    private void sloLine(String run, AgenticBench.Report r, Engine.TokenSloReport slo, double sloMs) {
        out().printf(Locale.ROOT, "- %s: token p99 %.3f ms = %.2f x the target (goal <= 1.2), p50 %.3f ms; %d of %d decode steps carried"
                        + " no prefill and still took longer than the target; %d steps had a prefill chunk cut to fit%n",
                run, ms(r.interToken(), 99), ms(r.interToken(), 99) / sloMs, ms(r.interToken(), 50), slo.decodeOnlyOverTarget(),
                slo.decodeSteps(), slo.prefillCutSteps());
    }

    private Engine.TokenSloReport lastSlo; // the latest runOnce's engine's target report (null without a target)
    private String lastPools = ""; // disaggregated: the latest runOnce's pools line

    private AgenticBench.Report runOnce(EngineOptions options, AgenticBench.Workload w) {
        try (Engine engine = loadEngine(options)) {
            checkContext(engine, w);
            AgenticBench.Report r = AgenticBench.run(engine, w);
            lastSlo = engine.tokenSloReport();
            lastPools = ScheduleReport.pools(engine.model());
            return r;
        }
    }

    private void row(String name, AgenticBench.Report r) {
        Histogram ttft = r.allTtft(), tok = r.interToken();
        out().printf(Locale.ROOT, "| %s | %d | %s | %.2f | %.2f | %.3f | %.3f | %.3f | %.2f | %.0f | %.0f%% | %d (%.1f) | %d | %.3f / %.3f | %d / %d |%n",
                name, r.workload().sessions(), r.prefixCache() ? "on" : "off", ms(ttft, 50), ms(ttft, 99), ms(tok, 50), ms(tok, 99),
                ms(tok, 99.9), ms(tok, 99) / ms(tok, 50), r.tokensPerSecond(), 100 * r.prefixHitRate(), r.peakPages(),
                r.peakPages() * r.pageBytes() / 1e6, r.steps(), ms(r.stepNanos(), 50), ms(r.stepNanos(), 99),
                r.stepTokens().getValueAtPercentile(50), r.stepTokens().getValueAtPercentile(99));
    }

    private static double ms(Histogram h, double percentile) {
        return h.getValueAtPercentile(percentile) / 1e6;
    }
}
