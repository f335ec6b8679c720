package dev.lockstep.moe.qwen3;

import dev.lockstep.memory.Progress;
import dev.lockstep.moe.synth.CheckpointSynthesizer;
import dev.lockstep.moe.synth.FamilySynth;

import java.nio.file.Path;

/**
 * A synthetic {@code qwen3_moe} checkpoint at any shape (default in the synth command: Qwen3-30B-A3B's layers), for
 * benchmarks and tests; the tensors and config come from {@link FamilySynth#qwen3}, the bytes from
 * {@link CheckpointSynthesizer}.
 */
public final class Qwen3MoeSynthesizer {
    /** Shape of the synthetic model. */
    public record Shape(int layers, int hidden, int experts, int topK, int moeFf, int heads, int kvHeads, int headDim, int vocab) {
        public long parameters() {
            long attention = (long) hidden * headDim * (2L * heads + 2L * kvHeads) + 2L * headDim;
            long moe = (long) experts * 3 * moeFf * hidden + (long) experts * hidden;
            return 2L * vocab * hidden + hidden + layers * (attention + moe + 2L * hidden);
        }

        FamilySynth.Plan plan() {
            return FamilySynth.qwen3(layers, vocab, hidden, experts, topK, moeFf, heads, kvHeads, headDim);
        }
    }

    private Qwen3MoeSynthesizer() {
    }

    public static void write(Shape s, long seed, Path tokenizerFrom, Path out, Progress progress) {
        FamilySynth.Plan plan = s.plan();
        CheckpointSynthesizer.write(plan.config(), plan.tensors(), seed, tokenizerFrom, out, progress);
    }
}
