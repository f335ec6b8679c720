package dev.lockstep.cli;

import dev.lockstep.engine.Bench;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.List;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import dev.lockstep.memory.LockstepException;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "bench", mixinStandardHelpOptions = true, subcommands = {AgenticBenchCommand.class, ServeBenchCommand.class}, description = {
        "llama-bench style throughput: pp N = prefill N tokens as one block, tg N = decode N tokens one by one,",
        "both after -d tokens of context; warm-up (the tests alternating, runs and seconds), then -r measured runs each;",
        "median (min..max) tok/s and heap bytes allocated per token.",
        "Each thread count runs in a fresh JVM (like JMH forks) unless --in-process.",
        "bench agentic: the many-sessions workload (see its --help)."})
final class BenchCommand extends LoadingCommand implements Callable<Integer> {
    @Option(names = {"-p", "--prefill"}, paramLabel = "N", defaultValue = "512", description = "Prompt tokens for pp (0 = skip; default ${DEFAULT-VALUE}).")
    int prefillTokens;

    @Option(names = {"-n", "--decode"}, paramLabel = "N", defaultValue = "128", description = "Tokens for tg (0 = skip; default ${DEFAULT-VALUE}).")
    int decodeTokens;

    @Option(names = {"-d", "--depth"}, paramLabel = "N", defaultValue = "0",
            description = "Tokens already in the context before each test, as llama-bench's -d (default ${DEFAULT-VALUE}).")
    int depth;

    @Option(names = {"-r", "--repetitions"}, paramLabel = "R", defaultValue = "5", description = "Measured runs per test (default ${DEFAULT-VALUE}).")
    int repetitions;

    @Option(names = "--warmup", paramLabel = "W", defaultValue = "1", description = "Unmeasured runs first, at least (default ${DEFAULT-VALUE}).")
    int warmups;

    @Option(names = "--warmup-seconds", paramLabel = "S", defaultValue = "8",
            description = "...and for at least S seconds, the tests alternating: the JIT needs thousands of steps to settle (default ${DEFAULT-VALUE}).")
    double warmupSeconds;

    @Option(names = "--threads", paramLabel = "N,N", split = ",", description = "Thread counts to test (default: 1 and available processors).")
    List<Integer> threads;

    @Option(names = "--pin", description = "Pin the compute threads to CPUs (worker i on CPU i, sched_setaffinity); refused = a warning, unpinned.")
    boolean pin;

    @Option(names = "--in-process", description = "Run every thread count in this JVM instead of one fresh JVM each.")
    boolean inProcess;

    @Option(names = "--jvms", paramLabel = "N", defaultValue = "1", description = {
            "Fresh JVMs per thread count (default ${DEFAULT-VALUE}), the thread counts alternating; then each JVM's median",
            "per test and their spread: how much a restart changes the speed."})
    int jvms;

    @Override
    boolean pinWorkers() {
        return pin;
    }

    @Override
    public Integer call() {
        if (jvms < 1 || (jvms > 1 && inProcess)) {
            throw new IllegalArgumentException("--jvms must be >= 1 and needs fresh JVMs (not --in-process), got " + jvms);
        }
        if (repetitions < 1 || warmups < 0 || prefillTokens < 0 || decodeTokens < 0 || depth < 0 || !(warmupSeconds >= 0)) {
            throw new IllegalArgumentException("need -r >= 1, --warmup >= 0, --warmup-seconds >= 0, -p >= 0, -n >= 0, -d >= 0");
        }
        long warmupNanos = (long) (warmupSeconds * 1e9);
        if (executionOptions.scheduled() && threads != null) {
            throw new IllegalArgumentException("give --threads (fork-join) or --workers / --mode disaggregated (a compiled schedule), not both");
        }
        List<Integer> counts = executionOptions.scheduled() ? List.of(executionOptions.workerCount())
                : threads != null ? threads
                : List.of(1, Runtime.getRuntime().availableProcessors()).stream().distinct().toList();
        for (int t : counts) {
            checkThreads(t);
        }
        out().printf(Locale.ROOT, "| model | threads | test | t/s median | min | max | heap B/token | spread of the runs |%n|---|---:|---|---:|---:|---:|---|---|%n");
        // test rows of every JVM, by (threads, test): each JVM's median
        java.util.Map<String, List<Double>> medians = new java.util.LinkedHashMap<>();
        for (int j = 0; j < jvms; j++) {
            for (int t : counts) {
                if (inProcess) {
                    runHere(t, warmupNanos);
                } else {
                    for (String row : runForked(t)) {
                        java.util.regex.Matcher m = TEST_ROW.matcher(row);
                        if (m.find()) {
                            medians.computeIfAbsent(m.group(1) + " | " + m.group(2), k -> new ArrayList<>()).add(Double.parseDouble(m.group(3)));
                        }
                    }
                }
            }
        }
        if (jvms > 1) {
            printJvmSpread(medians);
        }
        out().printf(Locale.ROOT, "kernels: %s, runs: %d measured per test after >= %d warm-up runs each and >= %.1f s of alternating warm-up; executor: %s%n",
                dev.lockstep.kernels.KernelProvider.get().name(), repetitions, warmups, warmupSeconds,
                executionOptions.disaggregated() ? "disaggregated (threads column: attention + FFN workers)"
                        : executionOptions.scheduled() ? "compiled schedule over --workers (threads column: workers)" : "fork-join");
        return 0;
    }

    /** A test row as the child prints it: threads, test, median. */
    private static final java.util.regex.Pattern TEST_ROW =
            java.util.regex.Pattern.compile("^\\| [^|]+ \\| (\\d+) \\| ((?:pp|tg)\\d+(?: @ d\\d+)?) \\| ([0-9.]+) \\|");

    /** Each JVM's median per test, in run order, and their spread (the slowest and fastest JVM over the median JVM). */
    private void printJvmSpread(java.util.Map<String, List<Double>> medians) {
        out().printf(Locale.ROOT, "%n| model | threads | test | JVMs | each JVM's median t/s, in run order | median JVM | slowest/median | fastest/median |%n"
                + "|---|---:|---|---:|---|---:|---:|---:|%n");
        String name = model.getFileName() == null ? model.toString() : model.getFileName().toString();
        medians.forEach((key, values) -> {
            double[] each = values.stream().mapToDouble(Double::doubleValue).toArray();
            double median = Bench.median(each);
            out().printf(Locale.ROOT, "| %s | %s | %d | %s | %.1f | %.2f | %.2f |%n", name, key, each.length,
                    String.join(", ", values.stream().map(v -> String.format(Locale.ROOT, "%.1f", v)).toList()), median,
                    java.util.Arrays.stream(each).min().orElseThrow() / median, java.util.Arrays.stream(each).max().orElseThrow() / median);
        });
    }

    /** Runs the tests for {@code t} threads in this JVM. */
    private void runHere(int t, long warmupNanos) {
        dev.lockstep.interconnect.Affinity.cpusAtStart(); // the CPU count before this thread is pinned
        checkThreads(t);
        try (Engine engine = loadEngine(new EngineOptions(t, EngineOptions.KernelChoice.PROVIDER, loadOptions()).withPinnedThreads(pin))) {
            if (pin) { // this thread runs the forwards: worker 0, on CPU 0
                dev.lockstep.interconnect.Affinity.Result r = dev.lockstep.interconnect.Affinity.pinCurrentThread(0);
                if (!r.pinned()) {
                    err().println("lockstep: warning: running unpinned: " + r.why());
                }
            }
            if ((long) depth + Math.max(prefillTokens, decodeTokens) > engine.model().maxPositions()) {
                throw new IllegalArgumentException("-d plus -p/-n exceed the model's max_position_embeddings (" + engine.model().maxPositions() + ")");
            }
            var scheduled = engine.model().scheduleExecutor();
            long vectorsBefore = scheduled == null ? 0 : scheduled.vectorsSent(), stepsBefore = scheduled == null ? 0 : scheduled.steps();
            Bench.Result decode = null;
            engine.kernelWarmup().ifPresent(w -> out().printf(Locale.ROOT, "| %s | %d | jit at load | | | | | %s |%n",
                    engine.modelDir().getFileName(), t, w.describe()));
            String[] jitBeforeMeasuring = {""};
            Runnable afterWarmup = () -> jitBeforeMeasuring[0] = dev.lockstep.kernels.KernelWarmup.Split.describeNow();
            List<Bench.Result> results = Bench.run(engine.model(), prefillTokens, decodeTokens, depth, repetitions, warmups, warmupNanos, afterWarmup);
            out().printf(Locale.ROOT, "| %s | %d | jit before measuring | | | | | %s |%n", engine.modelDir().getFileName(), t, jitBeforeMeasuring[0]);
            for (Bench.Result r : results) {
                print(engine, t, r);
                if (r.test().startsWith("tg")) {
                    decode = r;
                    printLatency(engine, t, r);
                }
            }
            if (scheduled != null) {
                out().printf(Locale.ROOT, "| %s | %d | schedule | | | | %s; moved %.1f vectors/step on average (%d steps, all tests); executor step latency (every step, warm-up included) %s; epoch drift %s |%n",
                        engine.modelDir().getFileName(), t, ScheduleReport.size(engine.model()),
                        (scheduled.vectorsSent() - vectorsBefore) / (double) Math.max(1, scheduled.steps() - stepsBefore),
                        scheduled.steps() - stepsBefore, ScheduleReport.latency(scheduled.stepLatencyNs()), ScheduleReport.drift(scheduled));
                if (engine.model().executionPlan().isDisaggregated()) {
                    out().printf(Locale.ROOT, "| %s | %d | pools | | | | %s (all tests) |%n", engine.modelDir().getFileName(), t,
                            ScheduleReport.pools(engine.model()));
                }
            }
            // The roofline of decode on this machine, measured now: read bandwidth with t threads over 1 GiB.
            double bandwidth = dev.lockstep.kernels.ReadBandwidth.measure(t, 1L << 30, 5);
            // a decode token reads the weights and, at depth, the KV of its context (the tg run's middle position)
            long kvBytes = depth == 0 ? 0 : engine.model().kvBytesPerToken(depth + decodeTokens / 2);
            long bytesPerToken = engine.model().weightBytesPerToken() + kvBytes;
            double roofline = bandwidth / bytesPerToken;
            long weightBytes = engine.model().summary().matrixBytesByFormat().values().stream().mapToLong(Long::longValue).sum();
            long cacheBytes = dev.lockstep.memory.TierPlacement.lastLevelCacheBytes();
            String fits = cacheBytes > 0 && weightBytes <= cacheBytes
                    ? String.format(Locale.ROOT, "; all %.1f MB of weights fit in the %d MB last-level cache: not a bound", weightBytes / 1e6, cacheBytes >> 20) : "";
            out().printf(Locale.ROOT, "| %s | %d | roofline tg | %.1f | | | read %.1f GB/s, weights %.1f MB/token%s%s%s |%n",
                    engine.modelDir().getFileName(), t, roofline, bandwidth / 1e9, (bytesPerToken - kvBytes) / 1e6,
                    kvBytes == 0 ? "" : String.format(Locale.ROOT, " + KV %.1f MB/token (%,d positions, %,d bytes per position)", kvBytes / 1e6,
                            depth + decodeTokens / 2, engine.model().kvLayout().bytesPerPosition()),
                    decode == null ? "" : String.format(Locale.ROOT, ", tg achieved %.0f%%", 100 * decode.median() / roofline), fits);
            var placement = engine.model().placement();
            out().printf(Locale.ROOT, "| %s | %d | placement | | | | SRAM %.2f of %.1f MB (routers, attention), HBM %.1f MB; KV pool up to %.0f MB, %s |%n",
                    engine.modelDir().getFileName(), t, placement.usedBytes(dev.lockstep.memory.MemoryTier.SRAM) / 1e6,
                    placement.capacityBytes(dev.lockstep.memory.MemoryTier.SRAM) / 1e6, placement.usedBytes(dev.lockstep.memory.MemoryTier.HBM) / 1e6,
                    engine.kvPool().pageCount() * (double) engine.kvPool().pageBytes() / 1e6,
                    engine.kvDisk() == null ? "no DISK tier" : String.format(Locale.ROOT, "DISK %.0f MB", engine.kvDisk().slots() * (double) engine.kvDisk().pageBytes() / 1e6));
            engine.model().summary().matrixBytesByFormat().forEach((f, bytes) -> out().printf(Locale.ROOT,
                    "| %s | %d | kernel %s | | | | %.1f MB: %s |%n", engine.modelDir().getFileName(), t, f, bytes / 1e6,
                    dev.lockstep.kernels.KernelProvider.get().matmulKernel(f)));
        }
    }

    /**
     * Per-step decode latency (a timer around each forward of the measured tg runs) beside the host's floor
     * measured now: the same number of steps of pure compute as long as the median step, split over the same
     * threads, meeting at a spin barrier (pinned likewise). The floor's tail is the host's; the rest is ours.
     */
    private void printLatency(Engine engine, int t, Bench.Result r) {
        org.HdrHistogram.Histogram h = r.stepNanos();
        long p50 = h.getValueAtPercentile(50);
        int steps = (int) Math.min(h.getTotalCount(), 5000);
        long[] floor = dev.lockstep.kernels.HostFloor.measure(t, p50, steps, pin ? cpu -> dev.lockstep.interconnect.Affinity.pinCurrentThread(cpu) : null);
        org.HdrHistogram.Histogram f = new org.HdrHistogram.Histogram(60_000_000_000L, 3);
        for (long v : floor) {
            f.recordValue(Math.min(v, f.getHighestTrackableValue()));
        }
        for (Object[] row : new Object[][]{{r.test() + " step latency", h}, {"host floor (" + steps + " spin-barrier steps)", f}}) {
            org.HdrHistogram.Histogram x = (org.HdrHistogram.Histogram) row[1];
            double q50 = x.getValueAtPercentile(50), q99 = x.getValueAtPercentile(99), q999 = x.getValueAtPercentile(99.9);
            out().printf(Locale.ROOT, "| %s | %d | %s | p50 %.1f us | p99 %.1f us | p999 %.1f us | p99/p50 %.2f, p999/p50 %.2f%s |%n",
                    engine.modelDir().getFileName(), t, row[0], q50 / 1e3, q99 / 1e3, q999 / 1e3, q99 / q50, q999 / q50, pin ? ", pinned" : "");
        }
    }

    /**
     * Runs the tests for {@code t} threads in a fresh JVM with this JVM's flags (as JMH forks): code the
     * JIT compiled for another thread count (or another test order) must not colour the numbers.
     */
    private List<String> runForked(int t) {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
        cmd.addAll(ManagementFactory.getRuntimeMXBean().getInputArguments());
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), LockstepCli.class.getName(), "bench", "--in-process",
                "--model", model.toString(), "-p", String.valueOf(prefillTokens), "-n", String.valueOf(decodeTokens), "-d", String.valueOf(depth),
                "-r", String.valueOf(repetitions), "--warmup", String.valueOf(warmups),
                "--warmup-seconds", String.valueOf(warmupSeconds)));
        if (!executionOptions.scheduled()) {
            cmd.addAll(List.of("--threads", String.valueOf(t)));
        }
        if (pin) {
            cmd.add("--pin");
        }
        cmd.addAll(quantOptions.asArguments());
        cmd.addAll(tierOptions.asArguments());
        cmd.addAll(executionOptions.asArguments());
        try {
            Process child = new ProcessBuilder(cmd).start();
            // The child's stderr is forwarded line by line (less the JVM's incubator-module notice) and its last
            // line kept, so a failing child explains itself here.
            String[] lastError = {""};
            Thread errPump = Thread.ofPlatform().daemon().start(() -> {
                try (var lines = child.errorReader(java.nio.charset.StandardCharsets.UTF_8).lines()) {
                    lines.filter(l -> !l.startsWith("WARNING: Using incubator modules")).forEach(l -> {
                        synchronized (lastError) {
                            lastError[0] = l;
                            err().println(l);
                            err().flush();
                        }
                    });
                }
            });
            List<String> rows = new ArrayList<>();
            try (var lines = child.inputReader(java.nio.charset.StandardCharsets.UTF_8).lines()) {
                lines.filter(l -> l.startsWith("| ") && !l.startsWith("| model")).forEach(l -> {
                    rows.add(l);
                    out().println(l);
                    out().flush();
                });
            }
            int code = child.waitFor();
            errPump.join();
            if (code != 0) {
                String why;
                synchronized (lastError) {
                    why = lastError[0].isEmpty() ? "" : ": " + lastError[0].replaceFirst("^lockstep: (error: )?", "");
                }
                throw new LockstepException("bench for " + t + " threads failed in its child JVM (exit " + code + ")" + why);
            }
            return rows;
        } catch (java.io.IOException e) {
            throw new LockstepException("cannot start a child JVM for the benchmark: " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new LockstepException("interrupted while benchmarking");
        }
    }

    private void print(Engine engine, int threads, Bench.Result r) {
        out().printf(Locale.ROOT, "| %s | %d | %s | %.1f | %.1f | %.1f | %.0f | %s |%n", engine.modelDir().getFileName(), threads, r.test(),
                r.median(), r.min(), r.max(), r.allocatedBytesPerToken(), r.spread());
        out().flush();
    }
}
