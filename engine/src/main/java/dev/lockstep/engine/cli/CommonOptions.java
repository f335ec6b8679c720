package dev.lockstep.engine.cli;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import picocli.CommandLine.Option;

import java.nio.file.Path;

/** Options every model command takes. */
final class CommonOptions {
    /** The bundled model, relative to the working directory (./lockstep runs from the repository root). */
    static final String DEFAULT_MODEL = "models/kjv-qwen3moe";

    @Option(names = "--model", paramLabel = "DIR", defaultValue = "${sys:lockstep.default.model:-models/kjv-qwen3moe}",
            description = "Model directory: config.json, safetensors (single or sharded), tokenizer.json. Default: ${DEFAULT-VALUE}")
    Path model;

    @Option(names = "--threads", paramLabel = "N", description = "Compute threads (default: available processors).")
    Integer threads;

    @Option(names = "--verbose", description = "Print stack traces with errors.")
    boolean verbose;

    Engine loadEngine() {
        int n = threads == null ? Runtime.getRuntime().availableProcessors() : threads;
        if (n < 1) {
            throw new IllegalArgumentException("--threads must be >= 1, got " + n);
        }
        return Engine.load(model, new EngineOptions(n));
    }
}
