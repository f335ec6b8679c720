package dev.lockstep.cli;

import dev.lockstep.moe.CheckpointQuantizer;
import dev.lockstep.moe.Nvfp4Recipe;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "quantize", mixinStandardHelpOptions = true, description = {
        "Write an NVFP4 copy of a bf16/f16/f32 model in NVIDIA ModelOpt's checkpoint layout (weight U8, weight_scale",
        "F8_E4M3, weight_scale_2 F32, hf_quant_config.json, quantization_config in config.json). Quantized: every Linear",
        "except embeddings, lm_head, routers and --exclude. The output appears only when complete."})
final class QuantizeCommand extends ModelCommand implements Callable<Integer> {
    @Option(names = "--out", paramLabel = "DIR", required = true, description = "New directory for the quantized model (must not exist).")
    Path outDir;

    @Option(names = "--exclude", paramLabel = "PATTERN", split = ",", description = {
            "Modules to keep unquantized: names with * wildcards, matched as prefixes (model.layers.0.mlp*)."})
    List<String> exclude = List.of();

    @Option(names = "--quantize-lm-head", description = "Quantize lm_head too (kept bf16 by default, as ModelOpt).")
    boolean quantizeLmHead;

    @Override
    public Integer call() {
        long start = System.nanoTime();
        ProgressBar bar = new ProgressBar(err(), "quantize", 0);
        CheckpointQuantizer.Result r;
        try {
            r = CheckpointQuantizer.quantize(model, outDir, new Nvfp4Recipe(quantizeLmHead, exclude),
                    LockstepCli.class.getAnnotation(picocli.CommandLine.Command.class).version()[0], bar);
        } finally {
            bar.finish();
        }
        out().printf(Locale.ROOT, "%s: %d modules quantized to NVFP4, %,d -> %,d bytes in %.2f s%n", outDir, r.quantizedModules(),
                r.inputBytes(), r.outputBytes(), (System.nanoTime() - start) / 1e9);
        return 0;
    }
}
