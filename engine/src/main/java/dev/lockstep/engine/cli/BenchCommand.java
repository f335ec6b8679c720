package dev.lockstep.engine.cli;

import dev.lockstep.engine.Bench;
import dev.lockstep.engine.Engine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "bench", description = {
        "llama-bench style throughput: pp N = prefill N tokens as one block, tg N = decode N tokens one by one,",
        "both from an empty context; one warm-up run, then -r measured runs; median (min..max) tok/s."})
final class BenchCommand extends ModelCommand implements Callable<Integer> {
    @Option(names = {"-p", "--prefill"}, paramLabel = "N", defaultValue = "512", description = "Prompt tokens for pp (0 = skip; default ${DEFAULT-VALUE}).")
    int prefillTokens;

    @Option(names = {"-n", "--decode"}, paramLabel = "N", defaultValue = "128", description = "Tokens for tg (0 = skip; default ${DEFAULT-VALUE}).")
    int decodeTokens;

    @Option(names = {"-r", "--repetitions"}, paramLabel = "R", defaultValue = "5", description = "Measured runs per test (default ${DEFAULT-VALUE}).")
    int repetitions;

    @Option(names = "--warmup", paramLabel = "W", defaultValue = "1", description = "Unmeasured runs first (default ${DEFAULT-VALUE}).")
    int warmups;

    @Option(names = "--threads", paramLabel = "N,N", split = ",", description = "Thread counts to test (default: 1 and available processors).")
    List<Integer> threads;

    @Override
    public Integer call() {
        if (repetitions < 1 || warmups < 0 || prefillTokens < 0 || decodeTokens < 0) {
            throw new IllegalArgumentException("need -r >= 1, --warmup >= 0, -p >= 0, -n >= 0");
        }
        List<Integer> counts = threads != null ? threads
                : List.of(1, Runtime.getRuntime().availableProcessors()).stream().distinct().toList();
        out().printf(Locale.ROOT, "| model | threads | test | t/s median | min | max |%n|---|---:|---|---:|---:|---:|%n");
        for (int t : counts) {
            try (Engine engine = loadEngine(t)) {
                if (Math.max(prefillTokens, decodeTokens) > engine.model().maxPositions()) {
                    throw new IllegalArgumentException("-p/-n exceed the model's max_position_embeddings (" + engine.model().maxPositions() + ")");
                }
                if (prefillTokens > 0) {
                    print(engine, t, Bench.prefill(engine.model(), prefillTokens, repetitions, warmups));
                }
                if (decodeTokens > 0) {
                    print(engine, t, Bench.decode(engine.model(), decodeTokens, repetitions, warmups));
                }
            }
        }
        out().printf(Locale.ROOT, "kernels: %s, runs: %d measured after %d warm-up%n",
                dev.lockstep.kernels.KernelProvider.get().name(), repetitions, warmups);
        return 0;
    }

    private void print(Engine engine, int threads, Bench.Result r) {
        out().printf(Locale.ROOT, "| %s | %d | %s | %.1f | %.1f | %.1f |%n", engine.modelDir().getFileName(), threads, r.test(),
                r.median(), r.min(), r.max());
        out().flush();
    }
}
