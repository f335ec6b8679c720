package dev.lockstep.cli;

import dev.lockstep.chat.ChatFormat;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.server.OpenAiServer;
import dev.lockstep.server.ServerOptions;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "An OpenAI-compatible HTTP server: /v1/chat/completions, /v1/completions (streaming or not), /v1/models,"
                + " /health, /metrics, /tokenize, /detokenize, /apply-template, and a chat page at /.")
final class ServeCommand extends LoadingCommand implements java.util.concurrent.Callable<Integer> {
    /** Helidon logs through java.util.logging at INFO (sockets bound, features, shutdown); the commands print their own lines. */
    private static final java.util.logging.Logger HELIDON_LOG = java.util.logging.Logger.getLogger("io.helidon");

    static void quietHelidon() {
        HELIDON_LOG.setLevel(java.util.logging.Level.WARNING);
    }

    @Option(names = "--host", paramLabel = "ADDR", defaultValue = ServerOptions.LOOPBACK,
            description = "Address to listen on (default: ${DEFAULT-VALUE}, loopback only; 0.0.0.0 exposes it to the network).")
    String host;

    @Option(names = "--port", paramLabel = "N", defaultValue = "8080", description = "Port (default: ${DEFAULT-VALUE}; 0 picks a free one).")
    int port;

    @Option(names = "--threads", paramLabel = "N", description = "Compute threads (default: available processors).")
    Integer threads;

    @Option(names = "--chat-template", paramLabel = "FILE|plain",
            description = "Chat template for /v1/chat/completions: a .jinja file, or 'plain' ('role: content' lines). Default: the model's own;"
                    + " a model without one answers chat requests with a 400 naming this option.")
    String chatTemplate;

    @Option(names = "--max-tokens", paramLabel = "N", defaultValue = "4096", description = "Most tokens one request may generate (default: ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--max-concurrent", paramLabel = "N", defaultValue = "16", description = "Generations running at once (default: ${DEFAULT-VALUE}).")
    int maxConcurrent;

    @Option(names = "--max-queue", paramLabel = "N", defaultValue = "64", description = "Requests waiting beyond those; more get 429 (default: ${DEFAULT-VALUE}).")
    int maxQueue;

    @Option(names = "--max-request-bytes", paramLabel = "N", defaultValue = "1048576", description = "Largest request body; larger gets 413 (default: ${DEFAULT-VALUE}).")
    int maxRequestBytes;

    @Option(names = "--model-name", paramLabel = "NAME", description = "The model's id in /v1/models and responses (default: the directory's name).")
    String modelName;

    @Option(names = "--token-slo-ms", paramLabel = "MS", description = "A per-token latency target: steps carrying decode tokens take prefill"
            + " chunks only up to what the online step-cost model says fits (default: none).")
    Double tokenSloMs;

    @picocli.CommandLine.Mixin
    KvOptions kvOptions = new KvOptions();

    @Override
    public Integer call() throws InterruptedException {
        if (!verbose) {
            quietHelidon();
        }
        int t = threads != null ? threads : defaultThreads();
        checkThreads(t);
        String name = modelName != null ? modelName : model.toAbsolutePath().normalize().getFileName().toString();
        ServerOptions options = new ServerOptions(host, port, maxRequestBytes, maxTokens, maxConcurrent, maxQueue, name);
        CompletableFuture<Engine> engine = new CompletableFuture<>();
        OpenAiServer server = OpenAiServer.start(options, engine, () -> ChatFormat.load(model, chatTemplate));
        err().println("lockstep: listening on http://" + host + ":" + server.port() + " (model " + name + " loading; GET /health says when it is ready)");
        err().flush();
        Engine e;
        try {
            EngineOptions o = kvOptions.apply(new EngineOptions(t, EngineOptions.KernelChoice.PROVIDER, loadOptions()));
            if (tokenSloMs != null) {
                if (!(tokenSloMs > 0)) {
                    throw new IllegalArgumentException("--token-slo-ms must be positive, got " + tokenSloMs);
                }
                o = o.withTokenSloNanos(Math.round(tokenSloMs * 1e6));
            }
            e = loadEngine(o);
        } catch (RuntimeException ex) {
            engine.completeExceptionally(ex);
            server.close();
            throw ex;
        }
        engine.complete(e);
        err().println("lockstep: ready: http://" + host + ":" + server.port() + "/v1 (Ctrl-C stops)");
        err().flush();
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.close();
            e.close();
            stopped.countDown();
        }));
        stopped.await();
        return 0;
    }
}
