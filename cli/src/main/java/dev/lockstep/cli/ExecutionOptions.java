package dev.lockstep.cli;

import dev.lockstep.moe.ExecutionPlan;
import dev.lockstep.moe.LoadOptions;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.List;

/**
 * How forwards run on workers: fork-join (the default), {@code --workers N --placement experts|rows} (a compiled
 * schedule), or {@code --mode disaggregated --attention-workers A --ffn-workers F} (attention-FFN disaggregation).
 */
final class ExecutionOptions {
    @Option(names = "--mode", paramLabel = "colocated|disaggregated", defaultValue = "colocated", description = {
            "colocated = each worker runs every part of the model (default); disaggregated = attention workers own",
            "sessions, FFN workers own experts, tokens cross between them as 320-byte vectors (bit-identical logits)."})
    String mode;

    @Option(names = "--attention-workers", paramLabel = "A", description = "With --mode disaggregated: workers that own sessions (default 1).")
    Integer attentionWorkers;

    @Option(names = "--ffn-workers", paramLabel = "F", description = "With --mode disaggregated: workers that own experts (default 1).")
    Integer ffnWorkers;

    @Option(names = "--workers", paramLabel = "N", description = {
            "Run forwards on a compiled schedule over N workers talking through 320-byte-vector rings",
            "(default: fork-join over --threads)."})
    Integer workers;

    @Option(names = "--placement", paramLabel = "experts|rows", defaultValue = "experts", description = {
            "With --workers: experts = each worker holds a range of every layer's experts (expert parallelism),",
            "rows = every matrix split by rows (default: ${DEFAULT-VALUE})."})
    String placement;

    @Option(names = "--idle", paramLabel = "backoff|spin|yield", defaultValue = "backoff", description = {
            "With --workers: how a worker waits for a message: spin, then yield, then park briefly (default);",
            "spin only; or yield only."})
    String idle;

    boolean disaggregated() {
        return switch (mode.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "colocated" -> false;
            case "disaggregated" -> true;
            default -> throw new IllegalArgumentException("--mode must be colocated or disaggregated, got '" + mode + "'");
        };
    }

    /** Forwards run on workers of their own (a compiled schedule, colocated or disaggregated), not fork-join. */
    boolean scheduled() {
        return workers != null || disaggregated();
    }

    /** The workers of a scheduled run (disaggregated: attention + FFN). */
    int workerCount() {
        return disaggregated() ? attention() + ffn() : workers;
    }

    private int attention() {
        return attentionWorkers == null ? 1 : attentionWorkers;
    }

    private int ffn() {
        return ffnWorkers == null ? 1 : ffnWorkers;
    }

    LoadOptions apply(LoadOptions options, boolean pin) {
        if (disaggregated()) {
            if (workers != null) {
                throw new IllegalArgumentException("--workers is for a colocated schedule; --mode disaggregated takes --attention-workers and --ffn-workers");
            }
            if (attention() < 1 || ffn() < 1) {
                throw new IllegalArgumentException("--attention-workers and --ffn-workers must be >= 1, got " + attention() + " and " + ffn());
            }
            return options.withExecution(ExecutionPlan.disaggregated(attention(), ffn(), pin).withIdle(idle()));
        }
        if (attentionWorkers != null || ffnWorkers != null) {
            throw new IllegalArgumentException("--attention-workers and --ffn-workers need --mode disaggregated");
        }
        if (workers == null) {
            return options;
        }
        if (workers < 1 || workers > ExecutionPlan.MAX_WORKERS) {
            throw new IllegalArgumentException("--workers must be in [1, " + ExecutionPlan.MAX_WORKERS + "], got " + workers);
        }
        ExecutionPlan.Placement p = switch (placement.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "experts" -> ExecutionPlan.Placement.EXPERTS;
            case "rows" -> ExecutionPlan.Placement.ROWS;
            default -> throw new IllegalArgumentException("--placement must be experts or rows, got '" + placement + "'");
        };
        return options.withExecution(ExecutionPlan.scheduled(workers, p, pin).withIdle(idle()));
    }

    private ExecutionPlan.Idle idle() {
        return switch (idle.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "backoff" -> ExecutionPlan.Idle.BACKOFF;
            case "spin" -> ExecutionPlan.Idle.SPIN;
            case "yield" -> ExecutionPlan.Idle.YIELD;
            default -> throw new IllegalArgumentException("--idle must be backoff, spin or yield, got '" + idle + "'");
        };
    }

    List<String> asArguments() {
        List<String> a = new ArrayList<>();
        if (workers != null) {
            a.addAll(List.of("--workers", String.valueOf(workers), "--placement", placement, "--idle", idle));
        }
        if (disaggregated()) {
            a.addAll(List.of("--mode", "disaggregated", "--attention-workers", String.valueOf(attention()), "--ffn-workers",
                    String.valueOf(ffn()), "--idle", idle));
        }
        return a;
    }
}
