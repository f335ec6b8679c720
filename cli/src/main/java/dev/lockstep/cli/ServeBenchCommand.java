package dev.lockstep.cli;

import dev.lockstep.chat.ChatFormat;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.Generation;
import dev.lockstep.engine.Session;
import dev.lockstep.server.OpenAiServer;
import dev.lockstep.server.ServerOptions;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import org.HdrHistogram.Histogram;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * What HTTP costs: the same streamed greedy requests run through {@code serve}'s OpenAI endpoint on loopback (SSE
 * parsed by a client) and in process ({@code Session.submit}), at each number of concurrent streams: TTFT and
 * per-token latency percentiles (client side: request sent to first text, gaps between texts) and aggregate tok/s.
 */
@Command(name = "serve", mixinStandardHelpOptions = true, description = {
        "Streams through the OpenAI-compatible server vs in process: TTFT and per-token p50/p99 and aggregate tok/s",
        "at 1, 8 and 32 concurrent streams (--streams)."})
final class ServeBenchCommand extends LoadingCommand implements java.util.concurrent.Callable<Integer> {
    @Option(names = "--streams", split = ",", defaultValue = "1,8,32", description = "Concurrent streams per run (default ${DEFAULT-VALUE}).")
    int[] streams;

    @Option(names = "--requests", defaultValue = "4", description = "Requests each stream sends, one after another (default ${DEFAULT-VALUE}).")
    int requests;

    @Option(names = "--gen-tokens", defaultValue = "64", description = "Tokens each request generates (default ${DEFAULT-VALUE}).")
    int genTokens;

    @Option(names = "--threads", paramLabel = "N", description = "Compute threads (default: available processors).")
    Integer threads;

    private static final String PROMPT = "And God said, Let there be light: and there was light. And God saw the light, that it was good:";

    /** One run's measurements. */
    private record Result(Histogram ttft, Histogram token, long tokens, long wallNanos) {
    }

    @Override
    public Integer call() throws Exception {
        if (requests < 1 || genTokens < 1 || streams.length == 0) {
            throw new IllegalArgumentException("need --requests >= 1, --gen-tokens >= 1 and at least one --streams value");
        }
        int t = threads != null ? threads : defaultThreads();
        checkThreads(t);
        if (!verbose) {
            ServeCommand.quietHelidon();
        }
        try (Engine engine = loadEngine(new EngineOptions(t, EngineOptions.KernelChoice.PROVIDER, loadOptions()));
             OpenAiServer server = OpenAiServer.start(ServerOptions.defaults("bench").withPort(0).withLimits(1 << 20, 4096, 64, 256),
                     CompletableFuture.completedFuture(engine), () -> ChatFormat.load(model, "plain"))) {
            String url = "http://127.0.0.1:" + server.port() + "/v1/completions";
            HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build(); // what serve speaks: no h2c upgrade attempt
            run(engine, http, url, 8, 2, true); // warm-up: the JIT compiles both paths before anything is measured
            run(engine, http, url, 8, 2, false);
            out().printf(Locale.ROOT, "%s, %d threads, %d requests per stream, %d tokens each (greedy, ignore_eos), prompt %d tokens%n%n",
                    model.getFileName(), t, requests, genTokens, engine.tokenizer().encode(PROMPT).length);
            out().printf(Locale.ROOT, "| streams | path | TTFT p50 ms | TTFT p99 ms | token p50 ms | token p99 ms | aggregate tok/s |%n");
            out().printf(Locale.ROOT, "|---:|---|---:|---:|---:|---:|---:|%n");
            for (int s : streams) {
                Result inProcess = run(engine, http, url, s, requests, false);
                Result overHttp = run(engine, http, url, s, requests, true);
                row(s, "in process", inProcess);
                row(s, "HTTP + SSE", overHttp);
                out().flush();
            }
        }
        return 0;
    }

    private void row(int s, String path, Result r) {
        out().printf(Locale.ROOT, "| %d | %s | %.1f | %.1f | %.2f | %.2f | %.0f |%n", s, path, r.ttft.getValueAtPercentile(50) / 1e6,
                r.ttft.getValueAtPercentile(99) / 1e6, r.token.getValueAtPercentile(50) / 1e6, r.token.getValueAtPercentile(99) / 1e6,
                r.tokens * 1e9 / r.wallNanos);
    }

    private Result run(Engine engine, HttpClient http, String url, int streams, int perStream, boolean overHttp) throws Exception {
        Histogram ttft = new Histogram(3_600_000_000_000L, 3);
        Histogram token = new Histogram(3_600_000_000_000L, 3);
        AtomicLong tokens = new AtomicLong();
        long start = System.nanoTime();
        try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
            List<Future<?>> futures = new ArrayList<>();
            for (int s = 0; s < streams; s++) {
                final String prompt = "Stream " + s + ". " + PROMPT; // distinct prompts: no prefix sharing between streams
                futures.add(pool.submit(() -> {
                    for (int r = 0; r < perStream; r++) {
                        long[] times = overHttp ? overHttp(http, url, prompt) : inProcess(engine, prompt);
                        synchronized (ttft) {
                            ttft.recordValue(times[0]);
                            for (int i = 1; i < times.length; i++) {
                                token.recordValue(times[i]);
                            }
                        }
                        tokens.addAndGet(times.length);
                    }
                    return null;
                }));
            }
            for (Future<?> f : futures) {
                f.get();
            }
        }
        return new Result(ttft, token, tokens.get(), System.nanoTime() - start);
    }

    /** TTFT, then the gap before each later token, in nanoseconds. */
    private long[] inProcess(Engine engine, String prompt) {
        long t0 = System.nanoTime();
        try (Session s = engine.newSession()) {
            Generation g = s.submit(GenerateRequest.of(engine.tokenizer().encode(prompt), genTokens).withIgnoreEos(true));
            long[] times = new long[genTokens];
            int n = 0;
            long last = t0;
            Generation.TokenEvent ev;
            while ((ev = g.next()) != null) {
                if (ev.id() < 0) {
                    continue;
                }
                long now = System.nanoTime();
                times[n++] = now - last;
                last = now;
            }
            return java.util.Arrays.copyOf(times, n);
        }
    }

    private long[] overHttp(HttpClient http, String url, String prompt) throws Exception {
        String body = "{\"prompt\": \"" + prompt + "\", \"max_tokens\": " + genTokens + ", \"temperature\": 0, \"ignore_eos\": true, \"stream\": true}";
        long t0 = System.nanoTime();
        HttpResponse<java.io.InputStream> res = http.send(HttpRequest.newBuilder(URI.create(url)).POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofInputStream());
        if (res.statusCode() != 200) {
            throw new IllegalStateException("serve answered " + res.statusCode());
        }
        long[] times = new long[genTokens];
        int n = 0;
        long last = t0;
        try (BufferedReader in = new BufferedReader(new InputStreamReader(res.body(), StandardCharsets.UTF_8))) {
            String line;
            while ((line = in.readLine()) != null) {
                if (line.startsWith("data: {") && !line.contains("\"finish_reason\":\"") && n < genTokens && line.contains("\"text\":")) {
                    long now = System.nanoTime();
                    times[n++] = now - last;
                    last = now;
                }
            }
        }
        return java.util.Arrays.copyOf(times, n);
    }
}
