package dev.lockstep.verify;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.http.StreamResponse;
import com.openai.errors.BadRequestException;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.completions.Completion;
import com.openai.models.completions.CompletionCreateParams;
import dev.lockstep.chat.ChatFormat;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.Session;
import dev.lockstep.server.OpenAiServer;
import dev.lockstep.server.ServerOptions;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code lockstep serve} on loopback with the bundled model, driven by clients nobody here wrote (the official OpenAI
 * Java SDK) and by raw HTTP where the protocol's edges matter: text equal to the in-process engine's, streaming and
 * not, usage with cached tokens, errors with OpenAI's body and the right status, a client that disconnects mid-stream
 * (its pages go back to the pool).
 */
class ServerTest {
    private static final String PROMPT = "In the beginning God created";
    private static final ObjectMapper JSON = new ObjectMapper();
    private static Engine engine;
    private static OpenAiServer server;
    private static OpenAIClient client;
    private static final HttpClient HTTP = HttpClient.newHttpClient();

    @BeforeAll
    static void start() {
        engine = Engine.load(Golden.bundledModel(), EngineOptions.defaults());
        server = OpenAiServer.start(ServerOptions.defaults("kjv").withPort(0).withLimits(1 << 16, 256, 4, 4),
                CompletableFuture.completedFuture(engine), () -> ChatFormat.load(Golden.bundledModel(), "plain"));
        client = OpenAIOkHttpClient.builder().baseUrl(base() + "/v1").apiKey("none").maxRetries(0).build();
    }

    @AfterAll
    static void stop() {
        server.close();
        engine.close();
    }

    private static String base() {
        return "http://127.0.0.1:" + server.port();
    }

    private static String inProcess(String prompt, int n) {
        try (Session s = engine.newSession()) {
            return s.submit(GenerateRequest.of(engine.tokenizer().encode(prompt), n)).await().text();
        }
    }

    @Test
    void completionsThroughTheOpenAiSdkEqualTheEngineInProcess() {
        Completion c = client.completions().create(CompletionCreateParams.builder().model("kjv").prompt(PROMPT).maxTokens(16).temperature(0.0).build());
        assertEquals(inProcess(PROMPT, 16), c.choices().get(0).text());
        assertEquals(16, c.usage().orElseThrow().completionTokens());
        assertEquals(5, c.usage().orElseThrow().promptTokens());

        StringBuilder streamed = new StringBuilder();
        try (StreamResponse<Completion> s = client.completions().createStreaming(
                CompletionCreateParams.builder().model("kjv").prompt(PROMPT).maxTokens(16).temperature(0.0).build())) {
            s.stream().forEach(chunk -> chunk.choices().forEach(ch -> streamed.append(ch.text())));
        }
        assertEquals(c.choices().get(0).text(), streamed.toString());
    }

    @Test
    void chatThroughTheOpenAiSdkStreamingAndNotAgree() {
        ChatCompletionCreateParams p = ChatCompletionCreateParams.builder().model("kjv").addSystemMessage("You are the King James Bible.")
                .addUserMessage("Genesis 1:1").maxCompletionTokens(12).temperature(0.0).build();
        ChatCompletion c = client.chat().completions().create(p);
        String text = c.choices().get(0).message().content().orElseThrow();
        String expected = inProcess(ChatFormat.load(Golden.bundledModel(), "plain").render(List.of(
                java.util.Map.of("role", "system", "content", "You are the King James Bible."),
                java.util.Map.of("role", "user", "content", "Genesis 1:1")), null, true, java.util.Map.of()), 12);
        assertEquals(expected, text);
        StringBuilder streamed = new StringBuilder();
        List<String> finish = new ArrayList<>();
        try (StreamResponse<ChatCompletionChunk> s = client.chat().completions().createStreaming(p)) {
            s.stream().forEach(chunk -> chunk.choices().forEach(ch -> {
                ch.delta().content().ifPresent(streamed::append);
                ch.finishReason().ifPresent(f -> finish.add(f.asString()));
            }));
        }
        assertEquals(text, streamed.toString());
        assertEquals(List.of(c.choices().get(0).finishReason().asString()), finish);
    }

    @Test
    void twoConcurrentClientsSharingAPrefixReuseItsPages() throws Exception {
        String shared = "And God said, Let there be light: and there was light. ".repeat(12);
        Completion first = client.completions().create(CompletionCreateParams.builder().model("kjv").prompt(shared + "And").maxTokens(4).temperature(0.0).build());
        assertEquals(0, first.usage().orElseThrow().promptTokensDetails().orElseThrow().cachedTokens().orElse(0L));
        var a = CompletableFuture.supplyAsync(() -> client.completions().create(
                CompletionCreateParams.builder().model("kjv").prompt(shared + "Then").maxTokens(4).temperature(0.0).build()));
        var b = CompletableFuture.supplyAsync(() -> client.completions().create(
                CompletionCreateParams.builder().model("kjv").prompt(shared + "So").maxTokens(4).temperature(0.0).build()));
        for (Completion c : List.of(a.get(), b.get())) {
            long cached = c.usage().orElseThrow().promptTokensDetails().orElseThrow().cachedTokens().orElse(0L);
            assertTrue(cached >= 96, "cached tokens: " + cached);
        }
        JsonNode metrics = null;
        String text = HTTP.send(HttpRequest.newBuilder(URI.create(base() + "/metrics")).build(), HttpResponse.BodyHandlers.ofString()).body();
        assertTrue(text.contains("lockstep:prompt_tokens_cached_total"), text);
        assertFalse(text.contains("lockstep:prompt_tokens_cached_total 0\n"), text);
        assertTrue(text.contains("lockstep:time_to_first_token_seconds_bucket{le=\"+Inf\"}"), text);
    }

    @Test
    void aClientThatDisconnectsMidStreamFreesItsPages() throws Exception {
        int before = engine.kvPool().usedPages() - engine.prefixCache().pages();
        int cachedBefore = engine.prefixCache().pages();
        String body = "{\"prompt\": \"" + PROMPT + "\", \"max_tokens\": 200, \"temperature\": 0, \"ignore_eos\": true, \"stream\": true}";
        HttpResponse<InputStream> res = HTTP.send(HttpRequest.newBuilder(URI.create(base() + "/v1/completions"))
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofInputStream());
        InputStream in = res.body();
        byte[] some = new byte[600];
        int read = in.readNBytes(some, 0, some.length); // a few events
        assertTrue(read > 0);
        in.close(); // the client goes away
        // the server notices at its next write, cancels the generation at the scheduler's next step and closes the session
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        String metrics = "";
        while (System.nanoTime() < deadline && !metrics.matches("(?s).*finished_reason=\"cancelled\"} [1-9].*")) {
            Thread.sleep(20);
            metrics = HTTP.send(HttpRequest.newBuilder(URI.create(base() + "/metrics")).build(), HttpResponse.BodyHandlers.ofString()).body();
        }
        assertTrue(metrics.matches("(?s).*finished_reason=\"cancelled\"} [1-9].*"), metrics);
        // every page is back in the pool but those the prefix cache keeps (full pages of the context, reclaimable)
        assertEquals(before, engine.kvPool().usedPages() - engine.prefixCache().pages(), "pages held by sessions");
        int kept = engine.prefixCache().pages() - cachedBefore;
        assertTrue(kept < 12, "cancelled well before 200 tokens (12 full pages): the cache kept " + kept + " pages of it");
    }

    @Test
    void badRequestsGetOpenAiErrorsNamingTheField() throws Exception {
        assertError(400, "max_tokens", "{\"prompt\": \"x\", \"max_tokens\": \"many\"}");
        assertError(400, "temperature", "{\"prompt\": \"x\", \"temperature\": 7}");
        assertError(400, "prompt", "{\"max_tokens\": 3}");
        assertError(400, "stop", "{\"prompt\": \"x\", \"stop\": [1]}");
        assertError(400, "logit_bias", "{\"prompt\": \"x\", \"logit_bias\": {\"-3\": 1}}");
        assertError(400, null, "{\"prompt\": ");
        assertError(400, "max_tokens", "{\"prompt\": \"x\", \"max_tokens\": 100000000000000000000}");
        assertError(404, "model", "{\"prompt\": \"x\", \"model\": \"gpt-9\"}");
        assertError(413, null, "{\"prompt\": \"" + "x".repeat(1 << 17) + "\"}");
        BadRequestException e = org.junit.jupiter.api.Assertions.assertThrows(BadRequestException.class, () -> client.completions().create(
                CompletionCreateParams.builder().model("kjv").prompt(PROMPT).maxTokens(100000).build()));
        assertTrue(e.getMessage().contains("max_tokens"), e.getMessage());
    }

    private static void assertError(int status, String param, String body) throws Exception {
        HttpResponse<String> res = HTTP.send(HttpRequest.newBuilder(URI.create(base() + "/v1/completions"))
                .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(status, res.statusCode(), res.body());
        if (status != 413) {
            JsonNode err = JSON.readTree(res.body()).get("error");
            assertTrue(err.get("message").asText().length() > 5, res.body());
            assertEquals(param, err.get("param").isNull() ? null : err.get("param").asText(), res.body());
        }
    }

    @Test
    void healthModelsTokenizeAndTemplateEndpoints() throws Exception {
        assertEquals(200, get("/health").statusCode());
        assertEquals("kjv", JSON.readTree(get("/v1/models").body()).at("/data/0/id").asText());
        JsonNode tokens = JSON.readTree(post("/tokenize", "{\"content\": \"" + PROMPT + "\"}").body()).get("tokens");
        assertEquals(5, tokens.size());
        assertEquals(PROMPT, JSON.readTree(post("/detokenize", "{\"tokens\": " + tokens + "}").body()).get("content").asText());
        assertEquals("user: hi\nassistant:", JSON.readTree(post("/apply-template", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}").body())
                .get("prompt").asText());
        assertTrue(get("/").body().contains("/v1/chat/completions"));
        assertEquals(404, get("/v2/nothing").statusCode());
    }

    @Test
    void nChoicesAreSeededChoiceByChoiceAndReproducible() throws Exception {
        String body = "{\"prompt\": \"" + PROMPT + "\", \"max_tokens\": 12, \"temperature\": 0.9, \"seed\": 5, \"n\": 3}";
        JsonNode a = JSON.readTree(post("/v1/completions", body).body());
        JsonNode b = JSON.readTree(post("/v1/completions", body).body());
        assertEquals(3, a.get("choices").size());
        for (int i = 0; i < 3; i++) {
            assertEquals(i, a.at("/choices/" + i + "/index").asInt());
            assertEquals(a.at("/choices/" + i + "/text").asText(), b.at("/choices/" + i + "/text").asText(), "same seed, same choice " + i);
            try (Session s = engine.newSession()) {
                String alone = s.submit(GenerateRequest.of(engine.tokenizer().encode(PROMPT), 12)
                        .withSampling(new dev.lockstep.engine.SamplingParams(0.9f, 0, 1f, 5 + i))).await().text();
                assertEquals(alone, a.at("/choices/" + i + "/text").asText(), "choice " + i + " is the request alone with seed + " + i);
            }
        }
        assertEquals(36, a.at("/usage/completion_tokens").asInt());
    }

    @Test
    void beyondTheRunningAndWaitingLimitsRequestsGet429() throws Exception {
        try (OpenAiServer s = OpenAiServer.start(ServerOptions.defaults("kjv").withPort(0).withLimits(1 << 16, 512, 1, 0),
                CompletableFuture.completedFuture(engine), () -> ChatFormat.load(Golden.bundledModel(), "plain"))) {
            String url = "http://127.0.0.1:" + s.port() + "/v1/completions";
            HttpResponse<InputStream> first = HTTP.send(HttpRequest.newBuilder(URI.create(url)).POST(HttpRequest.BodyPublishers.ofString(
                    "{\"prompt\": \"x\", \"max_tokens\": 400, \"ignore_eos\": true, \"stream\": true}")).build(), HttpResponse.BodyHandlers.ofInputStream());
            first.body().readNBytes(100); // it is running
            HttpResponse<String> second = HTTP.send(HttpRequest.newBuilder(URI.create(url)).POST(HttpRequest.BodyPublishers.ofString(
                    "{\"prompt\": \"x\", \"max_tokens\": 2}")).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(429, second.statusCode(), second.body());
            assertEquals("queue_full", JSON.readTree(second.body()).at("/error/code").asText());
            first.body().close();
        }
    }

    @Test
    void healthIs503WhileTheModelLoads() throws Exception {
        CompletableFuture<Engine> loading = new CompletableFuture<>();
        try (OpenAiServer s = OpenAiServer.start(ServerOptions.defaults("kjv").withPort(0), loading, () -> ChatFormat.load(Golden.bundledModel(), "plain"))) {
            HttpResponse<String> h = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + "/health")).build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(503, h.statusCode());
            HttpResponse<String> c = HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + "/v1/completions"))
                    .POST(HttpRequest.BodyPublishers.ofString("{\"prompt\": \"x\"}")).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(503, c.statusCode());
            loading.complete(engine);
            assertEquals(200, HTTP.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + "/health")).build(),
                    HttpResponse.BodyHandlers.ofString()).statusCode());
        }
    }

    private static HttpResponse<String> get(String path) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(URI.create(base() + path)).build(), HttpResponse.BodyHandlers.ofString());
    }

    private static HttpResponse<String> post(String path, String body) throws Exception {
        return HTTP.send(HttpRequest.newBuilder(URI.create(base() + path)).POST(HttpRequest.BodyPublishers.ofString(body)).build(),
                HttpResponse.BodyHandlers.ofString());
    }
}
