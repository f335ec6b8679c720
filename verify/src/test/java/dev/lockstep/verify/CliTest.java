package dev.lockstep.verify;

import dev.lockstep.engine.Tokenizer;
import dev.lockstep.cli.LockstepCli;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The CLI end to end, in process: the README's generate command prints exactly HF's greedy continuation. */
class CliTest {
    record Run(int code, String out, String err) {
    }

    static Run run(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        int code = LockstepCli.run(args, new PrintWriter(out), new PrintWriter(err));
        return new Run(code, out.toString(), err.toString());
    }

    @Test
    void greedyGenerateMatchesHfContinuation() {
        String model = Golden.bundledModel().toString();
        Run r = run("generate", "--model", model, "--prompt", "In the beginning God created", "-n", "48", "--temp", "0");
        assertEquals(0, r.code(), r.err());
        String expected;
        try (Tokenizer t = Tokenizer.load(Golden.bundledModel(), 4096)) {
            expected = t.decode(Golden.intArray(Golden.json("golden.json").get("greedy").get("p0")));
        }
        assertEquals(expected + System.lineSeparator(), r.out());
        assertTrue(r.err().contains("prompt tokens: 5, generated tokens: 48"), r.err());
        // Times, never a cold-JVM "tok/s" that would understate the engine's speed.
        assertTrue(r.err().matches("(?s).*load [0-9.]+ s, prefill [0-9]+ ms \\(5 tokens\\), decode [0-9]+ ms \\(47 steps, [0-9.]+ ms/step\\).*"), r.err());
        assertTrue(r.err().contains("for throughput run ./lockstep bench") && !r.err().contains("tok/s"), r.err());
    }

    @Test
    void seededSamplingIsReproducibleAcrossThreadCounts() {
        String model = Golden.bundledModel().toString();
        Run a = run("generate", "--model", model, "--prompt", "And Moses said", "-n", "24", "--temp", "0.9", "--seed", "7", "--threads", "1");
        Run b = run("generate", "--model", model, "--prompt", "And Moses said", "-n", "24", "--temp", "0.9", "--seed", "7", "--threads", "2");
        assertEquals(0, a.code(), a.err());
        assertEquals(a.out(), b.out());
    }

    @Test
    void perplexityScoresNMinusOneTokens(@TempDir Path tmp) throws IOException {
        int[] ids = Golden.intArray(Golden.json("golden.json").get("greedy").get("p0"));
        StringBuilder sb = new StringBuilder();
        for (int id : ids) {
            sb.append(id).append(id % 5 == 0 ? "\n" : " ");
        }
        Path tokens = tmp.resolve("t.txt");
        Files.writeString(tokens, sb.toString());
        Run r = run("perplexity", "--model", Golden.bundledModel().toString(), "--tokens", tokens.toString(), "--window", "10");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("tokens_scored 47"), r.out());
        Matcher m = Pattern.compile("ppl ([0-9.]+)").matcher(r.out());
        assertTrue(m.find(), r.out());
        assertTrue(Double.parseDouble(m.group(1)) > 1.0, r.out());

        Path text = tmp.resolve("t.txt.txt");
        Files.writeString(text, "In the beginning God created the heaven and the earth.");
        Run t = run("perplexity", "--model", Golden.bundledModel().toString(), "--text", text.toString());
        assertEquals(0, t.code(), t.err());

        Files.writeString(tokens, "12 99999 3");
        Run bad = run("perplexity", "--model", Golden.bundledModel().toString(), "--tokens", tokens.toString());
        assertEquals(LockstepCli.EXIT_USER_ERROR, bad.code());
        assertTrue(bad.err().contains("token 2 id 99999 is outside the vocabulary"), bad.err());
    }

    @Test
    void inspectReportsParameterCounts() {
        Run r = run("inspect", "--model", Golden.bundledModel().toString());
        assertEquals(0, r.code(), r.err());
        // 12,742,656 = HF's num_parameters() (golden.json train.params); active = total - 6 layers x 12 idle experts x 98,304.
        assertTrue(r.out().contains("parameters: 12,742,656 total, 5,664,768 active per token"), r.out());
        assertTrue(r.out().contains("architecture: Qwen3MoeForCausalLM (model_type qwen3_moe)"), r.out());
        assertTrue(r.out().contains("model.layers.5.mlp.experts.15.down_proj.weight"), r.out());
        assertTrue(r.out().contains("BF16"), r.out());
        assertTrue(!r.out().contains("unused:"), "the bundled model uses every tensor: " + r.out());
    }

    @Test
    void benchPrintsOneRowPerTest() {
        Run r = run("bench", "--in-process", "--model", Golden.bundledModel().toString(), "-p", "16", "-n", "4", "-r", "2",
                "--warmup-seconds", "0", "--threads", "1");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().matches("(?s).*\\| kjv-qwen3moe \\| 1 \\| pp16 \\| [0-9.]+ \\| [0-9.]+ \\| [0-9.]+ \\| [0-9]+ \\|.*"), r.out());
        assertTrue(r.out().matches("(?s).*\\| kjv-qwen3moe \\| 1 \\| tg4 \\| .*"), r.out());
        Run bad = run("bench", "--in-process", "--model", Golden.bundledModel().toString(), "-r", "0");
        assertEquals(LockstepCli.EXIT_USER_ERROR, bad.code(), bad.err());
    }

    @Test
    void everyCommandHasHelpAndAMissingCommandIsAUserError() {
        for (String command : new String[]{"generate", "perplexity", "inspect", "bench"}) {
            Run r = run(command, "--help");
            assertEquals(0, r.code(), command + ": " + r.err());
            assertTrue(r.out().startsWith("Usage: lockstep " + command), r.out());
        }
        Run none = run();
        assertEquals(LockstepCli.EXIT_USER_ERROR, none.code());
        assertTrue(none.err().contains("Missing required subcommand") && none.err().contains("Try 'lockstep --help'"), none.err());
    }

    @Test
    void everyKernelChoiceGivesTheSameText() {
        String model = Golden.bundledModel().toString();
        Run auto = run("generate", "--model", model, "--prompt", "And God said", "-n", "20", "--temp", "0.7", "--seed", "3");
        Run vector = run("generate", "--model", model, "--prompt", "And God said", "-n", "20", "--temp", "0.7", "--seed", "3", "--kernels", "vector");
        Run scalar = run("generate", "--model", model, "--prompt", "And God said", "-n", "20", "--temp", "0.7", "--seed", "3", "--kernels", "scalar");
        assertEquals(0, auto.code(), auto.err());
        assertTrue(auto.err().contains("kernels: scalar"), "auto picks scalar for a short job: " + auto.err());
        assertTrue(!vector.err().contains("kernels: scalar"), vector.err());
        assertEquals(vector.out(), scalar.out());
        assertEquals(vector.out(), auto.out());
    }
}
