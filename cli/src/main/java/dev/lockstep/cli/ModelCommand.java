package dev.lockstep.cli;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.nio.file.Path;

/**
 * What every model command shares: {@code --model}, {@code --verbose}, and the output stream picocli was
 * given (so tests can capture it). The default model is the bundled one; {@code ./lockstep} passes its
 * absolute path as {@code -Dlockstep.default.model} so it works from any directory.
 */
abstract class ModelCommand {
    @Option(names = "--model", paramLabel = "DIR", defaultValue = "${sys:lockstep.default.model:-models/kjv-qwen3moe}",
            description = "Model directory: config.json, safetensors (single or sharded), tokenizer.json. Default: ${DEFAULT-VALUE}")
    Path model;

    /** How weights are prepared at load; commands that take {@link QuantOptions} override this. */
    dev.lockstep.moe.LoadOptions loadOptions() {
        return dev.lockstep.moe.LoadOptions.DEFAULT;
    }

    @Option(names = "--verbose", description = "Print stack traces with errors.")
    boolean verbose;

    @Spec
    CommandSpec spec;

    PrintWriter out() {
        return spec.commandLine().getOut();
    }

    PrintWriter err() {
        return spec.commandLine().getErr();
    }

    Engine loadEngine(int threads) {
        return loadEngine(threads, EngineOptions.KernelChoice.PROVIDER);
    }

    Engine loadEngine(int threads, EngineOptions.KernelChoice kernels) {
        checkThreads(threads); // before EngineOptions: the message names the option
        return loadEngine(new EngineOptions(threads, kernels, loadOptions()));
    }

    /** Loads {@link #model} with {@code options}, its weights prepared as {@link #loadOptions()} says. */
    Engine loadEngine(EngineOptions options) {
        checkThreads(options.threads());
        // loads longer than a second show a progress bar (bytes of weights copied or quantized)
        ProgressBar bar = new ProgressBar(err(), "load", 1_000_000_000L);
        Engine engine;
        try {
            engine = Engine.load(model, options.withLoad(loadOptions().withProgress(bar)));
        } finally {
            bar.finish();
        }
        String cache = engine.model().summary().packedCache();
        if (cache.startsWith("wrote") || cache.startsWith("not written")) {
            err().println("lockstep: packed-weights cache " + cache + (cache.startsWith("wrote") ? "; later loads map it (--no-cache: neither)" : ""));
            err().flush();
        }
        return engine;
    }

    /** Refuses impossible thread counts; warns (once per count) when there are more threads than cores. */
    void checkThreads(int threads) {
        if (threads < 1 || threads > EngineOptions.MAX_THREADS) {
            throw new IllegalArgumentException("--threads must be in [1, " + EngineOptions.MAX_THREADS + "], got " + threads);
        }
        int cores = Runtime.getRuntime().availableProcessors();
        if (threads > cores && warnedThreads != threads) {
            warnedThreads = threads;
            err().println("lockstep: warning: --threads " + threads + " exceeds the " + cores + " available processors;"
                    + " workers then wait for each other's time slices (many times slower). Use --threads " + cores + " or fewer.");
            err().flush();
        }
    }

    private int warnedThreads;

    static int defaultThreads() {
        return Runtime.getRuntime().availableProcessors();
    }
}
