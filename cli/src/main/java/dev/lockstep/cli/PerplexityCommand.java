package dev.lockstep.cli;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.Perplexity;
import dev.lockstep.memory.LockstepException;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

@Command(name = "perplexity", mixinStandardHelpOptions = true, description = {
        "Windowed perplexity: for s = 0, W, 2W, ... the model reads tokens[s, s+W) from a fresh context and scores",
        "its predictions of tokens[s+1 .. s+W]; N tokens give N-1 scored tokens."})
final class PerplexityCommand extends LoadingCommand implements Callable<Integer> {
    @Option(names = "--threads", paramLabel = "N", description = "Compute threads (default: available processors).")
    int threads = defaultThreads();

    static final class Input {
        @Option(names = "--text", paramLabel = "FILE", required = true, description = "UTF-8 text file, tokenized with the model's tokenizer.")
        Path text;

        @Option(names = "--tokens", paramLabel = "FILE", required = true, description = "Whitespace-separated token ids.")
        Path tokens;
    }

    @ArgGroup(exclusive = true, multiplicity = "1")
    Input input;

    @Option(names = "--window", paramLabel = "W", defaultValue = "256", description = "Window length in tokens (default: ${DEFAULT-VALUE}).")
    int window;

    @Override
    public Integer call() {
        if (window < 1) {
            throw new IllegalArgumentException("--window must be >= 1, got " + window);
        }
        try (Engine engine = loadEngine(threads)) {
            if (window > engine.model().maxPositions()) {
                throw new IllegalArgumentException("--window " + window + " exceeds the model's max_position_embeddings ("
                        + engine.model().maxPositions() + ")");
            }
            int[] tokens = input.text != null ? engine.tokenizer().encode(read(input.text)) : readTokens(input.tokens, engine.model().vocabSize());
            if (tokens.length < 2) {
                throw new LockstepException("perplexity needs at least 2 tokens; the input has " + tokens.length);
            }
            Perplexity.Result r = Perplexity.compute(engine.model(), tokens, window);
            out().printf(Locale.ROOT, "ppl %.6f%nmean_nll %.8f nats%ntokens_scored %d%nnll_sum %.6f%ntokens %d, window %d, %s, time %.2f s (%.1f tok/s)%n",
                    r.perplexity(), r.meanNll(), r.scored(), r.nllSum(), r.tokens(), r.window(), engine.model().executionPlan().isScheduled()
                            ? "schedule workers " + engine.model().executionPlan().workers() : "threads " + engine.threads(),
                    r.nanos() / 1e9, r.tokens() * 1e9 / r.nanos());
        }
        return 0;
    }

    private static String read(Path file) {
        try {
            return TextFiles.utf8(Files.readAllBytes(file), file.toString());
        } catch (NoSuchFileException e) {
            throw new LockstepException(file + ": no such file");
        } catch (IOException e) {
            throw new LockstepException(file + ": cannot read (" + e.getMessage() + ")", e);
        }
    }

    static int[] readTokens(Path file, int vocab) {
        String text = read(file).strip();
        if (text.isEmpty()) {
            return new int[0];
        }
        String[] parts = text.split("\\s+");
        int[] ids = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            try {
                ids[i] = Integer.parseInt(parts[i]);
            } catch (NumberFormatException e) {
                throw new LockstepException(file + ": token " + (i + 1) + " '" + TextFiles.visible(parts[i]) + "' is not an integer id");
            }
            if (ids[i] < 0 || ids[i] >= vocab) {
                throw new LockstepException(file + ": token " + (i + 1) + " id " + ids[i] + " is outside the vocabulary [0, " + vocab + ")");
            }
        }
        return ids;
    }
}
