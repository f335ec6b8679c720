package dev.lockstep.cli;

import dev.lockstep.moe.ExecutionPlan;
import dev.lockstep.moe.LoadOptions;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.List;

/** How forwards run on workers: {@code --workers N --placement experts|rows} (a compiled schedule) or fork-join. */
final class ExecutionOptions {
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

    boolean scheduled() {
        return workers != null;
    }

    LoadOptions apply(LoadOptions options, boolean pin) {
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
        ExecutionPlan.Idle i = switch (idle.trim().toLowerCase(java.util.Locale.ROOT)) {
            case "backoff" -> ExecutionPlan.Idle.BACKOFF;
            case "spin" -> ExecutionPlan.Idle.SPIN;
            case "yield" -> ExecutionPlan.Idle.YIELD;
            default -> throw new IllegalArgumentException("--idle must be backoff, spin or yield, got '" + idle + "'");
        };
        return options.withExecution(ExecutionPlan.scheduled(workers, p, pin).withIdle(i));
    }

    List<String> asArguments() {
        List<String> a = new ArrayList<>();
        if (workers != null) {
            a.addAll(List.of("--workers", String.valueOf(workers), "--placement", placement, "--idle", idle));
        }
        return a;
    }
}
