package dev.lockstep.engine.cli;

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

    LoadOptions loadOptions() {
        if (quantizeLmHead && quant != Quant.nvfp4) {
            throw new IllegalArgumentException("--quantize-lm-head needs --quant nvfp4");
        }
        return new LoadOptions(quant == Quant.nvfp4, quantizeLmHead, List.of());
    }

    /** The same options as command-line arguments (for a child JVM). */
    List<String> asArguments() {
        List<String> args = new ArrayList<>(List.of("--quant", quant.name()));
        if (quantizeLmHead) {
            args.add("--quantize-lm-head");
        }
        return args;
    }
}
