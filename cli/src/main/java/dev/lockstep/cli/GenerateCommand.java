package dev.lockstep.cli;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.GenerationStats;
import dev.lockstep.engine.SamplingParams;
import dev.lockstep.engine.Session;
import dev.lockstep.engine.StopCondition;
import dev.lockstep.memory.LockstepException;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "generate", mixinStandardHelpOptions = true, description = "Generate text: streams the continuation to stdout, statistics to stderr.")
final class GenerateCommand extends LoadingCommand implements Callable<Integer> {
    @Option(names = "--threads", paramLabel = "N", description = {"Compute threads (default: available processors; 1 for a",
            "short job on the scalar kernels under tiered compilation, which leaves the other cores to the JIT compiler)."})
    Integer threads;

    @Option(names = {"-p", "--prompt"}, paramLabel = "TEXT", description = "Prompt text (default: read stdin).")
    String prompt;

    @Option(names = "-n", paramLabel = "N", defaultValue = "128", description = "Tokens to generate (default: ${DEFAULT-VALUE}).")
    int maxNewTokens;

    @Option(names = "--temp", paramLabel = "T", defaultValue = "0.8", description = "Temperature; 0 = greedy (default: ${DEFAULT-VALUE}).")
    float temperature;

    @Option(names = "--top-k", paramLabel = "K", defaultValue = "40", description = "Keep the K most likely tokens; 0 = all (default: ${DEFAULT-VALUE}).")
    int topK;

    @Option(names = "--top-p", paramLabel = "P", defaultValue = "0.95", description = "Nucleus sampling mass in (0, 1] (default: ${DEFAULT-VALUE}).")
    float topP;

    @Option(names = "--seed", paramLabel = "S", defaultValue = "42", description = "Sampling seed: same seed, same text (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--ignore-eos", description = "Do not stop at the end-of-sequence token.")
    boolean ignoreEos;

    @Option(names = "--echo", description = "Print the prompt before the continuation.")
    boolean echo;

    enum KernelMode { auto, vector, scalar }

    @Option(names = "--kernels", paramLabel = "MODE", defaultValue = "auto", description = {
            "auto (default), vector or scalar; every choice gives the same tokens. auto takes the scalar kernels for a",
            "short job on a small model (-n <= " + SHORT_JOB_TOKENS + ", a prompt of <= " + SHORT_JOB_PROMPT_CHARS + " characters, <= 64 MB of weights):",
            "this new JVM would finish it before the Vector API kernels were compiled."})
    KernelMode kernels;

    static final int SHORT_JOB_TOKENS = 64;
    static final int SHORT_JOB_PROMPT_CHARS = 256;
    /** Above this, the scalar kernels' slower tokens cost more than the Vector API's compile time saves. */
    static final long SHORT_JOB_MODEL_BYTES = 64L << 20;



    @Override
    public Integer call() throws IOException {
        if (maxNewTokens < 0) {
            throw new IllegalArgumentException("-n must be >= 0, got " + maxNewTokens);
        }
        SamplingParams params = new SamplingParams(temperature, topK, topP, seed);
        String text = prompt != null ? prompt : TextFiles.utf8(System.in.readAllBytes(), "standard input");
        PrintWriter out = out();
        PrintWriter err = err();
        long loadStart = System.nanoTime();
        boolean shortJob = maxNewTokens <= SHORT_JOB_TOKENS && text.length() <= SHORT_JOB_PROMPT_CHARS
                && QuantOptions.checkpointBytes(model) <= SHORT_JOB_MODEL_BYTES;
        EngineOptions.KernelChoice choice = kernels == KernelMode.scalar || (kernels == KernelMode.auto && shortJob)
                ? EngineOptions.KernelChoice.SCALAR : EngineOptions.KernelChoice.PROVIDER;
        boolean c1Only = "c1".equals(System.getProperty("lockstep.jit"));
        if (c1Only && choice != EngineOptions.KernelChoice.SCALAR) {
            // the launcher guessed a short job from the arguments; the Vector API kernels need C2
            err.println("lockstep: warning: this JVM runs C1 only (the launcher's short-job mode), which the vector kernels"
                    + " run slowly under; run with LOCKSTEP_JIT=default");
        }
        // A short scalar job under tiered compilation: one compute thread, the second core is worth more to C2
        // (0.63-0.66 s vs 0.70-0.78 s for the README command). Under the launcher's C1-only mode there is no C2
        // to feed, and the second thread halves the decode (0.53 vs 0.60 s; BENCHMARKS.md).
        int computeThreads = threads != null ? threads
                : choice == EngineOptions.KernelChoice.SCALAR && kernels == KernelMode.auto && !c1Only ? 1 : defaultThreads();
        try (Engine engine = loadEngine(computeThreads, choice)) {
            long loadNanos = System.nanoTime() - loadStart;
            int[] ids = engine.tokenizer().encode(text);
            if (ids.length == 0) {
                throw new LockstepException("prompt is empty: give --prompt TEXT or text on stdin");
            }
            long positions = (long) ids.length + maxNewTokens;
            if (positions > engine.model().maxPositions()) {
                throw new LockstepException("prompt (" + ids.length + " tokens) + -n " + maxNewTokens + " = " + positions
                        + " positions exceeds the model's max_position_embeddings (" + engine.model().maxPositions() + ")");
            }
            int context = (int) positions;
            if (echo) {
                out.print(text);
                out.flush();
            }
            GenerationStats stats;
            // under a schedule: per-token decode latency (time between tokens) and the vectors each token moved
            var scheduled = engine.model().scheduleExecutor();
            org.HdrHistogram.Histogram tokenNanos = new org.HdrHistogram.Histogram(60_000_000_000L, 3);
            long[] last = {0, 0, 0}; // last token's time, vectors sent at the first token, tokens since
            try (Session session = engine.newSession(context)) {
                stats = session.generate(ids, maxNewTokens, params, ignoreEos ? StopCondition.IGNORE_EOS : StopCondition.EOS,
                        (id, piece) -> {
                            if (scheduled != null) {
                                long now = System.nanoTime();
                                if (last[0] != 0) {
                                    tokenNanos.recordValue(Math.min(now - last[0], tokenNanos.getHighestTrackableValue()));
                                    last[2]++;
                                } else {
                                    last[1] = scheduled.vectorsSent();
                                }
                                last[0] = now;
                            }
                            if (!piece.isEmpty()) {
                                out.print(piece);
                                out.flush();
                            }
                        });
            }
            out.println();
            out.flush();
            // Times, not rates: a fresh JVM runs its first forwards before the JIT has compiled the kernels, so
            // a 5-token prefill's "tok/s" would understate the engine's speed a thousandfold. Throughput is
            // what `lockstep bench` measures, after warm-up.
            err.printf(Locale.ROOT,
                    "prompt tokens: %d, generated tokens: %d%s%n"
                            + "load %.2f s, prefill %.0f ms (%d tokens), decode %.0f ms (%d steps, %.1f ms/step); %s, kernels: %s%n"
                            + "(a fresh JVM: these times include JIT compilation; for throughput run ./lockstep bench)%n",
                    stats.promptTokens(), stats.generatedTokens(), (stats.stoppedAtEos() ? " (stopped at end-of-sequence)" : "")
                            + (engine.model().summary().quantizeNanos() > 0 ? String.format(Locale.ROOT, "; quantized to NVFP4 at load (%.2f s of CPU time)",
                            engine.model().summary().quantizeNanos() / 1e9) : ""),
                    loadNanos / 1e9, stats.prefillNanos() / 1e6, stats.promptTokens(), stats.decodeNanos() / 1e6, stats.decodeSteps(),
                    stats.decodeSteps() == 0 ? 0.0 : stats.decodeNanos() / 1e6 / stats.decodeSteps(),
                    engine.model().executionPlan().isDisaggregated() ? "disaggregated workers: " + engine.model().executionPlan().workers()
                            : engine.model().executionPlan().isScheduled() ? "schedule workers: " + engine.model().executionPlan().workers()
                            : "threads: " + engine.threads(), engine.kernelsName());
            if (scheduled != null) {
                err.printf(Locale.ROOT, "schedule: %s%n", ScheduleReport.size(engine.model()));
                if (last[2] > 0) {
                    double perToken = (scheduled.vectorsSent() - last[1]) / (double) last[2];
                    err.printf(Locale.ROOT, "decode per token: %s; %.1f vectors moved (%.1f KB); epoch drift: %s%n",
                            ScheduleReport.latency(tokenNanos), perToken, perToken * 320 / 1e3, ScheduleReport.drift(scheduled));
                }
                if (engine.model().executionPlan().isDisaggregated()) {
                    err.printf(Locale.ROOT, "pools (whole run): %s%n", ScheduleReport.pools(engine.model()));
                }
            }
        }
        return 0;
    }
}
