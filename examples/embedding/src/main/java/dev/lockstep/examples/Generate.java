package dev.lockstep.examples;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.GenerationStats;
import dev.lockstep.engine.SamplingParams;
import dev.lockstep.engine.Session;
import dev.lockstep.engine.StopCondition;

import java.nio.file.Path;

/** The README's Java example, as an application: greedy continuation of a prompt, streamed to stdout. */
public final class Generate {
    public static void main(String[] args) {
        Path model = Path.of(args.length > 0 ? args[0] : "models/kjv-qwen3moe");
        // README:begin
        try (Engine engine = Engine.load(model, new EngineOptions(2));
             Session session = engine.newSession(256)) {                       // context of up to 256 positions
            int[] prompt = engine.tokenizer().encode("In the beginning God created");
            GenerationStats stats = session.generate(prompt, 48, SamplingParams.GREEDY, StopCondition.EOS,
                    (tokenId, text) -> System.out.print(text));
            System.out.println();
            System.err.println(stats.generatedTokens() + " tokens");
        }
        // README:end
    }
}
