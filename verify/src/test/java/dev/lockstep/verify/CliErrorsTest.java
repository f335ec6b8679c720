package dev.lockstep.verify;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static dev.lockstep.verify.CorruptInputTest.assertOneLineError;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** CLI messages that used to mislead: each names the real problem. */
class CliErrorsTest {
    static final String MODEL = Golden.bundledModel().toString();

    @TempDir
    Path tmp;

    @Test
    void modelPointingAtAFile() {
        String file = Golden.bundledModel().resolve("config.json").toString();
        assertOneLineError(new String[]{"generate", "--model", file, "--prompt", "x", "-n", "1"}, "is a file, not a model directory");
        assertOneLineError(new String[]{"generate", "--model", tmp.resolve("nope").toString(), "--prompt", "x", "-n", "1"}, "does not exist");
    }

    @Test
    void hugeTokenCountDoesNotOverflow() {
        assertOneLineError(new String[]{"generate", "--model", MODEL, "--prompt", "In the", "-n", "2147483647"},
                "2147483649 positions exceeds the model's max_position_embeddings (2048)");
    }

    @Test
    void nonUtf8TextNamesTheByte() throws IOException {
        Path f = tmp.resolve("latin1.txt");
        Files.write(f, "In the beginning caf\u00e9".getBytes(StandardCharsets.ISO_8859_1));
        assertOneLineError(new String[]{"perplexity", "--model", MODEL, "--text", f.toString()},
                "latin1.txt: not UTF-8 text (invalid byte 0xe9 at byte offset 20)");
    }

    @Test
    void byteOrderMarkIsDroppedAndInvisibleCharactersAreShown() throws IOException {
        Path f = tmp.resolve("bom.txt");
        Files.writeString(f, "\uFEFF1146 259 2084 387 3363\n");
        CliTest.Run r = CliTest.run("perplexity", "--model", MODEL, "--tokens", f.toString(), "--threads", "1");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("tokens_scored 4"), r.out());

        Files.writeString(f, "1146 259\u200B 2084\n");
        assertOneLineError(new String[]{"perplexity", "--model", MODEL, "--tokens", f.toString()}, "'259\\u200B' is not an integer id");
    }

    @Test
    void moreThreadsThanCoresWarns() {
        int threads = Runtime.getRuntime().availableProcessors() + 1;
        CliTest.Run r = CliTest.run("generate", "--model", MODEL, "--prompt", "In the", "-n", "2", "--temp", "0",
                "--threads", String.valueOf(threads));
        assertEquals(0, r.code(), r.err());
        assertTrue(r.err().contains("warning: --threads " + threads + " exceeds the"), r.err());
        assertOneLineError(new String[]{"generate", "--model", MODEL, "--prompt", "x", "--threads", "100000"}, "--threads must be in [1, 1024]");
    }

    @Test
    void generateOnAScheduleReportsItAndBadWorkerOptionsAreRefused() {
        CliTest.Run r = CliTest.run("generate", "--model", MODEL, "--prompt", "In the beginning God created", "-n", "12", "--temp", "0",
                "--workers", "2", "--placement", "experts");
        CliTest.Run reference = CliTest.run("generate", "--model", MODEL, "--prompt", "In the beginning God created", "-n", "12", "--temp", "0");
        assertEquals(0, r.code(), r.err());
        assertEquals(reference.out(), r.out(), "the same text as fork-join");
        assertTrue(r.err().contains("schedule: 2 workers, placement experts") && r.err().contains("decode step: ")
                && r.err().contains("decode per token: p50 ") && r.err().contains("vectors moved"), r.err());
        CliTest.Run inspect = CliTest.run("inspect", "--model", MODEL, "--no-tensors", "--workers", "2");
        assertEquals(0, inspect.code(), inspect.err());
        assertTrue(inspect.out().contains("decode step: 118 ops (w0 59, w1 59)") && inspect.out().contains("worker 1 (59 ops)")
                && inspect.out().contains("RECV moe.l0.tokens w0->w1 frag 0 <= 13 vectors"), inspect.out());
        assertOneLineError(new String[]{"generate", "--model", MODEL, "--prompt", "x", "--workers", "0"}, "--workers must be in [1, 64], got 0");
        assertOneLineError(new String[]{"generate", "--model", MODEL, "--prompt", "x", "--workers", "2", "--placement", "columns"},
                "--placement must be experts or rows, got 'columns'");
        assertOneLineError(new String[]{"bench", "--model", MODEL, "--workers", "2", "--threads", "2"}, "give --threads (fork-join) or --workers");
        assertOneLineError(new String[]{"generate", "--model", MODEL, "--prompt", "x", "--workers", "2", "--idle", "nap"},
                "--idle must be backoff, spin or yield, got 'nap'");
    }

    @Test
    void disaggregatedGenerateGivesTheSameTextAndReportsThePoolsAndPlanSizesIt() {
        CliTest.Run r = CliTest.run("generate", "--model", MODEL, "--prompt", "In the beginning God created", "-n", "12", "--temp", "0",
                "--mode", "disaggregated", "--attention-workers", "1", "--ffn-workers", "2");
        CliTest.Run reference = CliTest.run("generate", "--model", MODEL, "--prompt", "In the beginning God created", "-n", "12", "--temp", "0");
        assertEquals(0, r.code(), r.err());
        assertEquals(reference.out(), r.out(), "the same text as colocated");
        assertTrue(r.err().contains("schedule: 1 attention + 2 FFN workers") && r.err().contains("pools (whole run): attention pool busy ")
                && r.err().contains("w0->w1 ") && r.err().contains("w2->w0 "), r.err());
        CliTest.Run plan = CliTest.run("plan", "--model", MODEL, "--attention-workers", "2", "--ffn-workers", "2", "--batch", "8", "--context", "64",
                "--link-gbps", "50", "--link-latency-ns", "1500", "--memory-gbs", "20");
        assertEquals(0, plan.code(), plan.err());
        assertTrue(plan.out().contains("2 micro-batch(es) per attention worker (tokens per lane: w0.0 2, w0.1 2, w1.0 2, w1.1 2)")
                && plan.out().contains("- step (critical path) ") && plan.out().contains("- w3 (FFN): computes ")
                && plan.out().contains("- vectors per token per link: ") && plan.out().contains("- where the step waits (longest):"), plan.out());
        assertOneLineError(new String[]{"generate", "--model", MODEL, "--prompt", "x", "--attention-workers", "2"},
                "--attention-workers and --ffn-workers need --mode disaggregated");
        assertOneLineError(new String[]{"generate", "--model", MODEL, "--prompt", "x", "--mode", "split"},
                "--mode must be colocated or disaggregated, got 'split'");
        assertOneLineError(new String[]{"generate", "--model", MODEL, "--prompt", "x", "--mode", "disaggregated", "--workers", "2"},
                "--workers is for a colocated schedule");
        assertOneLineError(new String[]{"generate", "--model", MODEL, "--prompt", "x", "--mode", "disaggregated", "--ffn-workers", "17"},
                "17 FFN workers for 16 experts in layer 0");
        assertOneLineError(new String[]{"plan", "--model", MODEL, "--batch", "0"}, "need --batch >= 1");
    }

    @Test
    void agenticBenchRunsAndRefusesBadSizes() {
        CliTest.Run r = CliTest.run("bench", "agentic", "--model", MODEL, "--sessions", "2", "--system-tokens", "40", "--turns", "2",
                "--tool-tokens", "8", "--gen-tokens", "4", "--fanout", "1", "--threads", "1", "--kv-disk", "4m");
        assertEquals(0, r.code(), r.err());
        assertTrue(r.out().contains("| cache on | 2 | on |") && r.out().contains("| cache off | 2 | off |")
                && r.out().contains("| single session | 1 | on |") && r.out().contains("decode only"), r.out());
        assertOneLineError(new String[]{"bench", "agentic", "--model", MODEL, "--kv-memory", "12x"}, "--kv-memory: '12x' is not a size");
        assertOneLineError(new String[]{"bench", "agentic", "--model", MODEL, "--turns", "40"}, "the workload needs");
    }

    @Test
    void benchShowsWhyItsChildFailed() throws IOException {
        Path dir = TinyModel.write(tmp.resolve("tiny"), 1);
        Files.writeString(dir.resolve("config.json"), "{\"model_type\": \"qwen3_moe\"}");
        CliTest.Run r = CliTest.run("bench", "--model", dir.toString(), "-p", "4", "-n", "4", "-r", "1", "--warmup", "0",
                "--warmup-seconds", "0", "--threads", "1");
        assertEquals(2, r.code(), r.err());
        assertTrue(r.err().contains("failed in its child JVM") && r.err().contains("config.json"), r.err());
    }
}
