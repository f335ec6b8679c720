package dev.lockstep.cli;

import dev.lockstep.moe.synth.CheckpointSynthesizer;
import dev.lockstep.moe.synth.FamilySynth;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "synth", mixinStandardHelpOptions = true, description = {
        "Write a synthetic checkpoint at a family's real layer shapes for benchmarks: weights ~ N(0, 1/fan_in), norms 1,",
        "biases 0, the bundled tokenizer. qwen3_moe (default): Qwen3-30B-A3B's layers, 4 of them (2.63 B parameters,",
        "5.25 GB bf16), its shape set by the options below; the other families at their model's shapes (--layers and",
        "--vocab apply): mixtral Mixtral-8x7B, qwen2_moe Qwen1.5-MoE-A2.7B, olmoe OLMoE-1B-7B, granitemoe",
        "granite-3.0-3b-a800m, gpt_oss gpt-oss-20b (MXFP4 experts), deepseek_v3 Moonlight-16B-A3B."})
final class SynthCommand implements Callable<Integer> {
    @Option(names = "--out", paramLabel = "DIR", required = true, description = "New directory (must not exist).")
    Path out;
    @Option(names = "--family", defaultValue = "qwen3_moe", paramLabel = "MODEL_TYPE",
            description = "qwen3_moe, mixtral, qwen2_moe, olmoe, granitemoe, gpt_oss or deepseek_v3. Default: ${DEFAULT-VALUE}.")
    String family;
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
        FamilySynth.Plan plan = family.equals("qwen3_moe")
                ? FamilySynth.qwen3(layers, vocab, hidden, experts, topK, moeFf, heads, kvHeads, headDim)
                : FamilySynth.plan(family, layers, vocab);
        long start = System.nanoTime();
        ProgressBar bar = new ProgressBar(spec.commandLine().getErr(), "synth", 0);
        try {
            CheckpointSynthesizer.write(plan.config(), plan.tensors(), seed, tokenizerFrom, out, bar);
        } finally {
            bar.finish();
        }
        spec.commandLine().getOut().printf(Locale.ROOT, "%s: %s, %,d parameters (%.2f GB) in %.1f s%n", out, plan.family(),
                plan.parameters(), plan.bytes() / 1e9, (System.nanoTime() - start) / 1e9);
        return 0;
    }
}
