package dev.lockstep.verify;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lockstep.chat.ChatFormat;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.SamplingParams;
import dev.lockstep.engine.Session;
import dev.lockstep.server.OpenAiServer;
import dev.lockstep.server.ServerOptions;
import java.io.BufferedReader;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * Many clients at once against a live server: streamed requests with seeded sampling, half of them abandoned at a
 * random point (the connection closed mid-stream). No 5xx; every completed text equals the same request run alone in
 * process (batch invariance through HTTP); at the end no session holds a page (those left are the prefix cache's).
 * Then a fuzz of the request parser: malformed and hostile bodies get a 4xx, never a 5xx, and leave nothing running.
 * 8 clients x 4 requests by default; {@code -Dlockstep.stress=true} runs the 32 x 20.
 */
class ServerLoadTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String[] PROMPTS = {"In the beginning God created", "And the LORD said unto Moses,", "Blessed are the",
            "The LORD is my shepherd;", "And it came to pass"};

    @Test
    void concurrentClientsHalfAbandonedNo5xxTextsAsAloneAndEveryPageBack() throws Exception {
        boolean stress = Boolean.getBoolean("lockstep.stress");
        int clients = stress ? 32 : 8;
        int perClient = stress ? 20 : 4;
        try (Engine engine = Engine.load(Golden.bundledModel(), EngineOptions.defaults());
             OpenAiServer server = OpenAiServer.start(ServerOptions.defaults("kjv").withPort(0).withLimits(1 << 16, 64, 8, 4 * clients),
                     CompletableFuture.completedFuture(engine), () -> ChatFormat.load(Golden.bundledModel(), "plain"))) {
            HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
            String url = "http://127.0.0.1:" + server.port() + "/v1/completions";
            ConcurrentLinkedQueue<String> failures = new ConcurrentLinkedQueue<>();
            AtomicInteger completed = new AtomicInteger();
            AtomicInteger abandoned = new AtomicInteger();
            ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor();
            List<Future<?>> futures = new ArrayList<>();
            for (int c = 0; c < clients; c++) {
                final int client = c;
                futures.add(pool.submit(() -> {
                    Random random = new Random(client);
                    for (int i = 0; i < perClient; i++) {
                        String prompt = PROMPTS[random.nextInt(PROMPTS.length)];
                        int maxTokens = 8 + random.nextInt(17);
                        long seed = random.nextLong();
                        boolean abandon = random.nextBoolean();
                        String body = "{\"prompt\": \"" + prompt + "\", \"max_tokens\": " + maxTokens + ", \"temperature\": 0.8, \"seed\": " + seed
                                + ", \"stream\": true}";
                        try {
                            HttpResponse<InputStream> res = http.send(HttpRequest.newBuilder(URI.create(url)).POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                                    HttpResponse.BodyHandlers.ofInputStream());
                            if (res.statusCode() != 200) {
                                failures.add("status " + res.statusCode() + ": " + new String(res.body().readAllBytes(), StandardCharsets.UTF_8));
                                continue;
                            }
                            if (abandon) {
                                res.body().readNBytes(random.nextInt(400));
                                res.body().close();
                                abandoned.incrementAndGet();
                                continue;
                            }
                            StringBuilder text = new StringBuilder();
                            try (BufferedReader r = new BufferedReader(new InputStreamReader(res.body(), StandardCharsets.UTF_8))) {
                                String line;
                                while ((line = r.readLine()) != null) {
                                    if (line.startsWith("data: {")) {
                                        JsonNode chunk = JSON.readTree(line.substring(6));
                                        if (chunk.has("error")) {
                                            failures.add("error event: " + line);
                                        }
                                        for (JsonNode ch : chunk.path("choices")) {
                                            text.append(ch.path("text").asText());
                                        }
                                    }
                                }
                            }
                            String alone = alone(engine, prompt, maxTokens, seed);
                            if (!alone.equals(text.toString())) {
                                failures.add("client " + client + " request " + i + ": '" + text + "' != alone '" + alone + "'");
                            }
                            completed.incrementAndGet();
                        } catch (Exception e) {
                            failures.add(e.toString());
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> f : futures) {
                f.get(10, TimeUnit.MINUTES);
            }
            pool.close();
            assertTrue(failures.isEmpty(), failures.size() + " failures, first: " + failures.peek());
            assertEquals(clients * perClient, completed.get() + abandoned.get());
            assertEquals(0, sessionPages(engine), "pages held by sessions after the load");
            fuzz(http, url, engine);
        }
    }

    private static String alone(Engine engine, String prompt, int maxTokens, long seed) {
        try (Session s = engine.newSession()) {
            return s.submit(GenerateRequest.of(engine.tokenizer().encode(prompt), maxTokens).withSampling(new SamplingParams(0.8f, 0, 1f, seed)))
                    .await().text();
        }
    }

    private static int sessionPages(Engine engine) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        int held;
        while ((held = engine.kvPool().usedPages() - engine.prefixCache().pages()) > 0 && System.nanoTime() < deadline) {
            Thread.sleep(20);
        }
        return held;
    }

    /** Malformed JSON, wrong types, huge numbers, deep nesting, invalid UTF-8: a 4xx each, never a 5xx. */
    private static void fuzz(HttpClient http, String url, Engine engine) throws Exception {
        List<byte[]> bodies = new ArrayList<>();
        String valid = "{\"prompt\": \"In the beginning\", \"max_tokens\": 2, \"temperature\": 0, \"stop\": [\"x\"], \"logit_bias\": {\"5\": 1}}";
        for (int cut = 0; cut < valid.length(); cut += 3) {
            bodies.add(valid.substring(0, cut).getBytes(StandardCharsets.UTF_8));
        }
        for (String v : new String[] {"null", "true", "-1", "1e999", "99999999999999999999999", "\"x\"", "[]", "{}", "[1, \"a\"]", "0.5"}) {
            for (String field : new String[] {"prompt", "max_tokens", "temperature", "top_p", "top_k", "seed", "n", "stop", "logit_bias",
                    "logprobs", "stream", "stream_options", "min_p", "presence_penalty", "model", "messages"}) {
                bodies.add(("{\"prompt\": \"a\", \"max_tokens\": 2, \"" + field + "\": " + v + "}").getBytes(StandardCharsets.UTF_8));
            }
        }
        bodies.add(("{\"prompt\": " + "[".repeat(5000) + "]".repeat(5000) + "}").getBytes(StandardCharsets.UTF_8));
        bodies.add(new byte[] {'{', '"', 'p', 'r', 'o', 'm', 'p', 't', '"', ':', '"', (byte) 0xC3, (byte) 0x28, '"', '}'});
        bodies.add(new byte[] {(byte) 0xFF, (byte) 0xFE, 0, 0});
        bodies.add("{\"prompt\": \"a\", \"max_tokens\": 2, \"prompt\": 5}".getBytes(StandardCharsets.UTF_8));
        Random random = new Random(7);
        for (int i = 0; i < 200; i++) {
            byte[] b = valid.getBytes(StandardCharsets.UTF_8);
            for (int k = 0; k < 3; k++) {
                b[random.nextInt(b.length)] = (byte) random.nextInt(256);
            }
            bodies.add(b);
        }
        for (String chatUrl : new String[] {url, url.replace("/v1/completions", "/v1/chat/completions"), url.replace("/v1/completions", "/tokenize")}) {
            for (byte[] body : bodies) {
                HttpResponse<String> res = http.send(HttpRequest.newBuilder(URI.create(chatUrl)).timeout(Duration.ofSeconds(60))
                        .POST(HttpRequest.BodyPublishers.ofByteArray(body)).build(), HttpResponse.BodyHandlers.ofString());
                assertTrue(res.statusCode() < 500, chatUrl + " answered " + res.statusCode() + " to " + new String(body, StandardCharsets.ISO_8859_1)
                        + ": " + res.body());
            }
        }
        assertEquals(0, sessionPages(engine), "pages held by sessions after the fuzz");
    }
}
