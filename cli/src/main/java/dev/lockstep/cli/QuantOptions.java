package dev.lockstep.cli;

import dev.lockstep.moe.LoadOptions;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.List;

/** {@code --quant} and {@code --quantize-lm-head}, shared by the commands that load a model to run it. */
final class QuantOptions {
    enum Quant { none, nvfp4 }

    @Option(names = "--quant", paramLabel = "FORMAT", defaultValue = "none", description = {
            "none (default: weights as stored; NVFP4 checkpoints load as NVFP4) or nvfp4: quantize a bf16/f16/f32",
            "model at load with the ModelOpt recipe (the same bits as `lockstep quantize` and loading the result)."})
    Quant quant = Quant.none;

    @Option(names = "--quantize-lm-head", description = "With --quant nvfp4: quantize lm_head too (kept dense by default).")
    boolean quantizeLmHead;

    @Option(names = "--no-cache", description = {"Do not map or write the packed-weights cache (used for models of 256 MB and more:",
            "the first load writes the weights in the kernels' layout to $LOCKSTEP_CACHE_DIR, else ~/.cache/lockstep,",
            "and later loads map that file instead of repacking)."})
    boolean noCache;

    /**
     * Models smaller than this are repacked at every load, not mapped: for the bundled model (25 MB) mapping would
     * take ~70 ms off a cold `generate` but cost ~15% of steady decode (weights in mapped file pages); measured in
     * BENCHMARKS.md ("First run").
     */
    static final long CACHE_MIN_BYTES = 256L << 20;

    LoadOptions loadOptions(java.nio.file.Path model) {
        if (quantizeLmHead && quant != Quant.nvfp4) {
            throw new IllegalArgumentException("--quantize-lm-head needs --quant nvfp4");
        }
        LoadOptions options = new LoadOptions(quant == Quant.nvfp4, quantizeLmHead, List.of());
        return noCache || checkpointBytes(model) < CACHE_MIN_BYTES ? options : options.withCache(cacheDir());
    }

    static java.nio.file.Path cacheDir() {
        String dir = System.getenv("LOCKSTEP_CACHE_DIR");
        if (dir != null && !dir.isBlank()) {
            return java.nio.file.Path.of(dir);
        }
        String xdg = System.getenv("XDG_CACHE_HOME");
        return (xdg != null && !xdg.isBlank() ? java.nio.file.Path.of(xdg) : java.nio.file.Path.of(System.getProperty("user.home"), ".cache"))
                .resolve("lockstep");
    }

    /** Bytes of the model directory's safetensors files (0 when it cannot be listed: the load will say why). */
    static long checkpointBytes(java.nio.file.Path model) {
        try (var files = java.nio.file.Files.list(model)) {
            return files.filter(f -> f.getFileName().toString().endsWith(".safetensors")).mapToLong(f -> f.toFile().length()).sum();
        } catch (java.io.IOException | RuntimeException e) {
            return 0;
        }
    }

    /** The same options as command-line arguments (for a child JVM). */
    List<String> asArguments() {
        List<String> args = new ArrayList<>(List.of("--quant", quant.name()));
        if (quantizeLmHead) {
            args.add("--quantize-lm-head");
        }
        if (noCache) {
            args.add("--no-cache");
        }
        return args;
    }
}
