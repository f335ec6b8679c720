package dev.lockstep.engine.cli;

import dev.lockstep.moe.qwen3.Qwen3MoeSynthesizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "synth", mixinStandardHelpOptions = true, description = {
        "Write a synthetic qwen3_moe checkpoint at real layer shapes (default: Qwen3-30B-A3B's layers, 4 of them:",
        "2.63 B parameters, 5.25 GB bf16) for benchmarks: weights ~ N(0, 1/fan_in), norms 1, the bundled tokenizer."})
final class SynthCommand implements Callable<Integer> {
    @Option(names = "--out", paramLabel = "DIR", required = true, description = "New directory (must not exist).")
    Path out;
    @Option(names = "--layers", defaultValue = "4", description = "Default: ${DEFAULT-VALUE}.")
    int layers;
    @Option(names = "--hidden", defaultValue = "2048", description = "Default: ${DEFAULT-VALUE}.")
    int hidden;
    @Option(names = "--experts", defaultValue = "128", description = "Default: ${DEFAULT-VALUE}.")
    int experts;
    @Option(names = "--top-k", defaultValue = "8", description = "Default: ${DEFAULT-VALUE}.")
    int topK;
    @Option(names = "--moe-ff", defaultValue = "768", description = "Expert intermediate size. Default: ${DEFAULT-VALUE}.")
    int moeFf;
    @Option(names = "--heads", defaultValue = "32", description = "Default: ${DEFAULT-VALUE}.")
    int heads;
    @Option(names = "--kv-heads", defaultValue = "4", description = "Default: ${DEFAULT-VALUE}.")
    int kvHeads;
    @Option(names = "--head-dim", defaultValue = "128", description = "Default: ${DEFAULT-VALUE}.")
    int headDim;
    @Option(names = "--vocab", defaultValue = "32768", description = "Default: ${DEFAULT-VALUE}.")
    int vocab;
    @Option(names = "--seed", defaultValue = "0", description = "Default: ${DEFAULT-VALUE}.")
    long seed;
    @Option(names = "--tokenizer-from", paramLabel = "DIR", defaultValue = "${sys:lockstep.default.model:-models/kjv-qwen3moe}",
            description = "Model directory whose tokenizer is copied. Default: ${DEFAULT-VALUE}.")
    Path tokenizerFrom;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        for (int v : new int[]{layers, hidden, experts, topK, moeFf, heads, kvHeads, headDim, vocab}) {
            if (v < 1) {
                throw new IllegalArgumentException("every size must be >= 1");
            }
        }
        Qwen3MoeSynthesizer.Shape shape = new Qwen3MoeSynthesizer.Shape(layers, hidden, experts, topK, moeFf, heads, kvHeads, headDim, vocab);
        long start = System.nanoTime();
        ProgressBar bar = new ProgressBar(spec.commandLine().getErr(), "synth", 0);
        try {
            Qwen3MoeSynthesizer.write(shape, seed, tokenizerFrom, out, bar);
        } finally {
            bar.finish();
        }
        spec.commandLine().getOut().printf(Locale.ROOT, "%s: qwen3_moe, %,d parameters (%.2f GB bf16) in %.1f s%n", out,
                shape.parameters(), shape.parameters() * 2 / 1e9, (System.nanoTime() - start) / 1e9);
        return 0;
    }
}
