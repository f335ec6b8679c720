package dev.lockstep.server;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lockstep.chat.ChatDelta;
import dev.lockstep.chat.ChatFormat;
import dev.lockstep.chat.ChatRun;
import dev.lockstep.chat.ChatTemplateException;
import dev.lockstep.chat.OutputParser;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.FinishReason;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.Generation;
import dev.lockstep.engine.SamplingParams;
import io.helidon.http.HeaderNames;
import io.helidon.http.HeaderValues;
import io.helidon.http.Status;
import io.helidon.webserver.WebServer;
import io.helidon.webserver.http.HttpRouting;
import io.helidon.webserver.http.ServerRequest;
import io.helidon.webserver.http.ServerResponse;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

/**
 * The OpenAI-compatible HTTP server ({@code lockstep serve}): Helidon SE's web server, one virtual thread per request,
 * over one in-process {@link Engine} whose scheduler batches every request's steps. Each request runs in its own
 * session; requests that share a prefix share its KV pages through the engine's prefix cache. A streamed request whose
 * client goes away is cancelled at the scheduler's next step and its session closed (pages back in the pool).
 *
 * <p>Endpoints: {@code POST /v1/chat/completions}, {@code POST /v1/completions} (streamed as server-sent events ending
 * with {@code [DONE]}, or not), {@code GET /v1/models}, {@code GET /health} (503 while the model loads),
 * {@code GET /metrics} (Prometheus), {@code POST /tokenize}, {@code POST /detokenize}, {@code POST /apply-template},
 * and a chat page at {@code /}.
 */
public final class OpenAiServer implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final int MAX_JSON_DEPTH = 64;

    static {
        JSON.getFactory().setStreamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(MAX_JSON_DEPTH)
                .maxNumberLength(64).maxStringLength(1 << 22).build());
    }

    private final ServerOptions options;
    private final CompletableFuture<Engine> engine;
    private final Supplier<ChatFormat> chatFormat;
    private final ServerMetrics metrics = new ServerMetrics();
    private final Semaphore slots;
    private final AtomicLong ids = new AtomicLong();
    private final WebServer server;
    private volatile ChatFormat format;
    private volatile RuntimeException formatError;

    private OpenAiServer(ServerOptions options, CompletableFuture<Engine> engine, Supplier<ChatFormat> chatFormat) {
        this.options = options;
        this.engine = engine;
        this.chatFormat = chatFormat;
        this.slots = new Semaphore(options.maxConcurrent(), true);
        this.server = WebServer.builder()
                .host(options.host())
                .port(options.port())
                .maxPayloadSize(options.maxRequestBytes())
                // one small write per token: without TCP_NODELAY, Nagle's algorithm holds a token back until the
                // client's delayed ACK (tens of ms)
                .connectionOptions(o -> o.tcpNoDelay(true))
                .routing(this::routes)
                .build()
                .start();
    }

    /**
     * Starts listening at once; {@code engine} completes when the model has loaded (until then {@code /health} answers
     * 503 and model endpoints 503). {@code chatFormat} is asked once, after loading: it may throw (a model without a
     * chat template), and then the chat endpoints answer 400 with its message while completions still work.
     */
    public static OpenAiServer start(ServerOptions options, CompletableFuture<Engine> engine, Supplier<ChatFormat> chatFormat) {
        return new OpenAiServer(options, engine, chatFormat);
    }

    /** The port it listens on (the one chosen when the options said 0). */
    public int port() {
        return server.port();
    }

    @Override
    public void close() {
        server.stop();
    }

    private void routes(HttpRouting.Builder r) {
        r.get("/health", this::health)
                .get("/metrics", (req, res) -> text(res, 200, "text/plain; version=0.0.4; charset=utf-8", metrics.render(engine.getNow(null))))
                .get("/v1/models", (req, res) -> handle(res, () -> models()))
                .post("/v1/chat/completions", (req, res) -> generate(req, res, true))
                .post("/v1/completions", (req, res) -> generate(req, res, false))
                .post("/tokenize", (req, res) -> handle(res, () -> tokenize(body(req))))
                .post("/detokenize", (req, res) -> handle(res, () -> detokenize(body(req))))
                .post("/apply-template", (req, res) -> handle(res, () -> applyTemplate(body(req))))
                .get("/", (req, res) -> page(res))
                .any((req, res) -> error(res, new ApiError(404, "invalid_request_error", null, "not_found",
                        "no endpoint " + req.prologue().method().text() + " " + req.path().path())));
    }

    // ---- endpoints ----

    private void health(ServerRequest req, ServerResponse res) {
        if (!engine.isDone()) {
            text(res, 503, "application/json", "{\"status\":\"loading\"}");
        } else if (engine.isCompletedExceptionally()) {
            text(res, 503, "application/json", "{\"status\":\"failed\"}");
        } else {
            text(res, 200, "application/json", "{\"status\":\"ok\"}");
        }
    }

    private ObjectNode models() {
        ObjectNode out = JSON.createObjectNode().put("object", "list");
        ObjectNode m = out.putArray("data").addObject();
        m.put("id", options.modelName()).put("object", "model").put("created", 0).put("owned_by", "lockstep");
        Engine e = engine.getNow(null);
        if (e != null) {
            m.put("max_model_len", e.model().maxPositions());
        }
        return out;
    }

    private ObjectNode tokenize(JsonNode body) {
        Engine e = ready();
        String text;
        if (Fields.present(body, "messages")) {
            text = chat().render(ChatFormat.messages(CompletionRequest.messages(body)), null, Fields.bool(body, "add_generation_prompt", true), Map.of());
        } else {
            text = Fields.string(body, "content", Fields.string(body, "prompt", null));
            if (text == null) {
                throw ApiError.invalid("content", "'content' (a string) or 'messages' is required");
            }
        }
        int[] ids = e.tokenizer().encode(text);
        ObjectNode out = JSON.createObjectNode();
        ArrayNode tokens = out.putArray("tokens");
        for (int id : ids) {
            tokens.add(id);
        }
        out.put("count", ids.length);
        return out;
    }

    private ObjectNode detokenize(JsonNode body) {
        Engine e = ready();
        int[] ids = CompletionRequest.tokenIds(body, "tokens", e);
        return JSON.createObjectNode().put("content", e.tokenizer().decode(ids));
    }

    private ObjectNode applyTemplate(JsonNode body) {
        ready();
        ChatFormat f = chat();
        return JSON.createObjectNode().put("prompt", CompletionRequest.render(f, body));
    }

    private void page(ServerResponse res) {
        try (InputStream in = OpenAiServer.class.getResourceAsStream("chat.html")) {
            text(res, 200, "text/html; charset=utf-8", new String(in.readAllBytes(), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    // ---- generation ----

    private void generate(ServerRequest req, ServerResponse res, boolean chat) {
        CompletionRequest r;
        try {
            String id = (chat ? "chatcmpl-" : "cmpl-") + Long.toHexString(System.currentTimeMillis()) + Long.toHexString(ids.incrementAndGet());
            r = CompletionRequest.parse(body(req), chat, ready(), this::chat, options, id);
        } catch (ApiError e) {
            error(res, e);
            return;
        } catch (ChatTemplateException e) {
            error(res, ApiError.invalid("messages", "chat_template", e.getMessage()));
            return;
        }
        if (!admit()) {
            metrics.rejected.increment();
            error(res, new ApiError(429, "rate_limit_exceeded", null, "queue_full", "the server is at its limit of "
                    + options.maxConcurrent() + " running and " + options.maxQueue() + " waiting requests; retry later"));
            return;
        }
        metrics.running.incrementAndGet();
        try {
            if (r.stream()) {
                stream(res, r);
            } else {
                complete(res, r);
            }
        } finally {
            metrics.running.decrementAndGet();
            slots.release();
        }
    }

    private boolean admit() {
        if (slots.tryAcquire()) {
            return true;
        }
        if (metrics.waiting.incrementAndGet() > options.maxQueue()) {
            metrics.waiting.decrementAndGet();
            return false;
        }
        try {
            slots.acquire();
            return true;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        } finally {
            metrics.waiting.decrementAndGet();
        }
    }

    /** One choice's outcome. */
    private record Choice(String text, String reasoning, List<ChatDelta.ToolCall> calls, FinishReason reason, Generation.Usage usage,
                          ArrayNode logprobs, RuntimeException error) {
    }

    /** Runs choice {@code index} to the end, calling {@code sink} with each delta (streaming) as it comes. */
    private Choice run(CompletionRequest r, int index, DeltaSink sink) throws IOException {
        Engine e = ready();
        GenerateRequest g = index == 0 ? r.generate() : r.generate().withSampling(withSeed(r.generate().sampling(), r.seed() + index));
        OutputParser parser = r.chat() ? r.format().parser(r.promptText(), "call_" + r.id().substring(r.id().indexOf('-') + 1) + "_" + index + "_") : null;
        ArrayNode logprobs = r.logprobs() ? JSON.createArrayNode() : null;
        ChatRun.Result result;
        try {
            result = ChatRun.run(e, g, parser, (ev, deltas, moreReady) -> {
                ObjectNode lp = logprobs != null && ev != null && ev.id() >= 0 ? logprob(e, ev, r.topLogprobs()) : null;
                if (lp != null) {
                    logprobs.add(lp);
                }
                if (sink != null) {
                    if (deltas.isEmpty() && lp != null) {
                        sink.accept(new ChatDelta.Content(""), lp);
                    }
                    for (int i = 0; i < deltas.size(); i++) {
                        sink.accept(deltas.get(i), i == 0 ? lp : null);
                    }
                    if (!moreReady) {
                        sink.flush(); // what is ready went out in one write
                    }
                }
            });
        } catch (ChatRun.Aborted aborted) {
            Generation.Usage u = aborted.partial().usage();
            metrics.record(FinishReason.CANCELLED, u.promptTokens(), u.cachedTokens(), u.generatedTokens(), u.timeToFirstTokenNanos(), u.decodeNanos());
            if (aborted.getCause() instanceof IOException io) {
                throw io;
            }
            throw new UncheckedIOException(new IOException(aborted.getCause()));
        }
        Generation.Usage u = result.usage();
        metrics.record(result.finishReason(), u.promptTokens(), u.cachedTokens(), u.generatedTokens(), u.timeToFirstTokenNanos(), u.decodeNanos());
        return new Choice(result.text(), result.reasoning(), result.toolCalls(), result.finishReason(), u, logprobs, result.error());
    }

    private static SamplingParams withSeed(SamplingParams p, long seed) {
        return new SamplingParams(p.temperature(), p.topK(), p.topP(), seed);
    }

    /** Where a streamed choice's deltas go: each is written as an event; {@link #flush} sends what was written. */
    private interface DeltaSink {
        void accept(ChatDelta delta, ObjectNode logprob) throws IOException;

        void flush() throws IOException;
    }

    private static ObjectNode logprob(Engine e, Generation.TokenEvent ev, int top) {
        ObjectNode o = JSON.createObjectNode();
        o.put("token", e.tokenizer().decode(new int[] {ev.id()}));
        o.put("logprob", ev.logprob());
        ArrayNode t = o.putArray("top_logprobs");
        for (int i = 0; i < Math.min(top, ev.top().size()); i++) {
            Generation.TopLogprob tl = ev.top().get(i);
            t.addObject().put("token", e.tokenizer().decode(new int[] {tl.id()})).put("logprob", tl.logprob());
        }
        return o;
    }

    private void complete(ServerResponse res, CompletionRequest r) {
        List<Choice> choices = new ArrayList<>();
        // the n choices run at once, each in its own session: the scheduler batches their steps
        try (var pool = java.util.concurrent.Executors.newVirtualThreadPerTaskExecutor()) {
            List<java.util.concurrent.Future<Choice>> running = new ArrayList<>();
            for (int i = 0; i < r.n(); i++) {
                final int index = i;
                running.add(pool.submit(() -> run(r, index, null)));
            }
            for (var f : running) {
                choices.add(f.get());
            }
        } catch (java.util.concurrent.ExecutionException ex) {
            error(res, new ApiError(500, "server_error", null, null, "generation failed: " + ex.getCause().getMessage()));
            return;
        } catch (InterruptedException ex) {
            Thread.currentThread().interrupt();
            error(res, new ApiError(500, "server_error", null, null, "interrupted"));
            return;
        }
        for (Choice c : choices) {
            if (c.error != null) {
                error(res, new ApiError(500, "server_error", null, null, "generation failed: " + c.error.getMessage()));
                return;
            }
        }
        ObjectNode out = JSON.createObjectNode();
        out.put("id", r.id()).put("object", r.chat() ? "chat.completion" : "text_completion").put("created", System.currentTimeMillis() / 1000)
                .put("model", options.modelName());
        ArrayNode arr = out.putArray("choices");
        int generated = 0;
        for (int i = 0; i < choices.size(); i++) {
            Choice c = choices.get(i);
            generated += c.usage.generatedTokens();
            ObjectNode ch = arr.addObject().put("index", i);
            if (r.chat()) {
                ObjectNode msg = ch.putObject("message").put("role", "assistant");
                msg.put("content", c.text.isEmpty() && !c.calls.isEmpty() ? null : c.text);
                if (!c.reasoning.isEmpty()) {
                    msg.put("reasoning_content", c.reasoning);
                }
                if (!c.calls.isEmpty()) {
                    ArrayNode calls = msg.putArray("tool_calls");
                    for (ChatDelta.ToolCall tc : c.calls) {
                        calls.add(toolCall(tc, false));
                    }
                }
                if (c.logprobs != null) {
                    ch.putObject("logprobs").set("content", c.logprobs);
                } else {
                    ch.putNull("logprobs");
                }
            } else {
                ch.put("text", c.text);
                if (c.logprobs != null) {
                    ch.set("logprobs", completionLogprobs(c.logprobs));
                } else {
                    ch.putNull("logprobs");
                }
            }
            ch.put("finish_reason", finishReason(c));
        }
        out.set("usage", usage(r, choices.getFirst().usage.cachedTokens(), generated));
        json(res, 200, out);
    }

    private void stream(ServerResponse res, CompletionRequest r) {
        res.status(Status.OK_200);
        res.header(HeaderNames.CONTENT_TYPE, "text/event-stream; charset=utf-8");
        res.header(HeaderValues.CACHE_NO_CACHE);
        long created = System.currentTimeMillis() / 1000;
        int generated = 0;
        int cached = 0;
        try (OutputStream out = res.outputStream()) {
            for (int i = 0; i < r.n(); i++) {
                final int index = i;
                if (r.chat()) {
                    ObjectNode first = chunk(r, created, index);
                    ((ObjectNode) first.withArray("choices").get(0)).putObject("delta").put("role", "assistant").put("content", "");
                    sse(out, first);
                }
                java.util.Set<Integer> streamedCalls = new java.util.HashSet<>();
                Choice c = run(r, index, new DeltaSink() {
                    @Override
                    public void flush() throws IOException {
                        out.flush();
                    }

                    @Override
                    public void accept(ChatDelta delta, ObjectNode logprob) throws IOException {
                        ObjectNode chunk = chunk(r, created, index);
                        ObjectNode choice = (ObjectNode) chunk.withArray("choices").get(0);
                        if (r.chat()) {
                            ObjectNode d = choice.putObject("delta");
                            switch (delta) {
                                case ChatDelta.Content ct -> d.put("content", ct.text());
                                case ChatDelta.Reasoning rz -> d.put("reasoning_content", rz.text());
                                case ChatDelta.ToolCallStart st -> {
                                    streamedCalls.add(st.index());
                                    ObjectNode call = d.putArray("tool_calls").addObject().put("index", st.index()).put("id", st.id()).put("type", "function");
                                    call.putObject("function").put("name", st.name()).put("arguments", "");
                                }
                                case ChatDelta.ToolCallArguments a ->
                                        d.putArray("tool_calls").addObject().put("index", a.index()).putObject("function").put("arguments", a.text());
                                case ChatDelta.ToolCall tc -> {
                                    if (streamedCalls.contains(tc.index())) {
                                        return; // its start and arguments went out already
                                    }
                                    d.putArray("tool_calls").add(toolCall(tc, true));
                                }
                            }
                            if (logprob != null) {
                                choice.putObject("logprobs").putArray("content").add(logprob);
                            } else {
                                choice.putNull("logprobs");
                            }
                        } else {
                            choice.put("text", delta instanceof ChatDelta.Content ct ? ct.text() : "");
                            if (logprob != null) {
                                choice.set("logprobs", completionLogprobs(JSON.createArrayNode().add(logprob)));
                            } else {
                                choice.putNull("logprobs");
                            }
                        }
                        choice.putNull("finish_reason");
                        write(out, chunk); // flushed when nothing more is ready (flush())
                    }
                });
                generated += c.usage.generatedTokens();
                cached = index == 0 ? c.usage.cachedTokens() : cached;
                ObjectNode last = chunk(r, created, index);
                ObjectNode choice = (ObjectNode) last.withArray("choices").get(0);
                if (r.chat()) {
                    choice.putObject("delta");
                } else {
                    choice.put("text", "");
                }
                choice.putNull("logprobs");
                if (c.error != null) {
                    ObjectNode err = JSON.createObjectNode();
                    err.putObject("error").put("message", "generation failed: " + c.error.getMessage()).put("type", "server_error");
                    sse(out, err);
                    break;
                }
                choice.put("finish_reason", finishReason(c));
                sse(out, last);
            }
            if (r.includeUsage()) {
                ObjectNode u = chunk(r, created, 0);
                u.putArray("choices");
                u.set("usage", usage(r, cached, generated));
                sse(out, u);
            }
            out.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
            out.flush();
        } catch (IOException | UncheckedIOException e) {
            // the client went away: run() has cancelled the generation and closed its session
        }
    }

    private ObjectNode chunk(CompletionRequest r, long created, int index) {
        ObjectNode c = JSON.createObjectNode();
        c.put("id", r.id()).put("object", r.chat() ? "chat.completion.chunk" : "text_completion").put("created", created).put("model", options.modelName());
        c.putArray("choices").addObject().put("index", index);
        return c;
    }

    private static void sse(OutputStream out, JsonNode event) throws IOException {
        write(out, event);
        out.flush();
    }

    /** One server-sent event, not flushed. */
    private static void write(OutputStream out, JsonNode event) throws IOException {
        out.write(("data: " + JSON.writeValueAsString(event) + "\n\n").getBytes(StandardCharsets.UTF_8));
    }

    private static ObjectNode toolCall(ChatDelta.ToolCall tc, boolean indexed) {
        ObjectNode o = JSON.createObjectNode();
        if (indexed) {
            o.put("index", tc.index());
        }
        o.put("id", tc.id()).put("type", "function");
        o.putObject("function").put("name", tc.name()).put("arguments", tc.arguments());
        return o;
    }

    private static ObjectNode completionLogprobs(ArrayNode content) {
        ObjectNode o = JSON.createObjectNode();
        ArrayNode tokens = o.putArray("tokens");
        ArrayNode lps = o.putArray("token_logprobs");
        ArrayNode tops = o.putArray("top_logprobs");
        for (JsonNode t : content) {
            tokens.add(t.get("token"));
            lps.add(t.get("logprob"));
            ObjectNode top = tops.addObject();
            for (JsonNode alt : t.get("top_logprobs")) {
                top.set(alt.get("token").asText(), alt.get("logprob"));
            }
        }
        return o;
    }

    private static String finishReason(Choice c) {
        if (!c.calls.isEmpty() && c.reason == FinishReason.STOP) {
            return "tool_calls";
        }
        return switch (c.reason) {
            case STOP -> "stop";
            case LENGTH -> "length";
            case CANCELLED -> "cancelled";
            case ERROR -> "error";
        };
    }

    private static ObjectNode usage(CompletionRequest r, int cached, int generated) {
        int promptTokens = r.prompt().length;
        ObjectNode u = JSON.createObjectNode();
        u.put("prompt_tokens", promptTokens).put("completion_tokens", generated).put("total_tokens", promptTokens + generated);
        u.putObject("prompt_tokens_details").put("cached_tokens", cached);
        return u;
    }

    // ---- plumbing ----

    private Engine ready() {
        if (!engine.isDone()) {
            throw new ApiError(503, "server_error", null, "loading", "the model is still loading; GET /health answers 200 when it is ready");
        }
        if (engine.isCompletedExceptionally()) {
            throw new ApiError(503, "server_error", null, "load_failed", "the model failed to load; see the server's log");
        }
        return engine.join();
    }

    private ChatFormat chat() {
        ready();
        if (format == null && formatError == null) {
            synchronized (this) {
                if (format == null && formatError == null) {
                    try {
                        format = chatFormat.get();
                    } catch (RuntimeException e) {
                        formatError = e;
                    }
                }
            }
        }
        if (formatError != null) {
            throw ApiError.invalid("messages", "no_chat_template", formatError.getMessage());
        }
        return format;
    }

    private static JsonNode body(ServerRequest req) {
        byte[] bytes;
        try {
            bytes = req.content().as(byte[].class);
        } catch (RuntimeException e) {
            throw new ApiError(413, "invalid_request_error", null, "request_too_large", "the request body could not be read: " + e.getMessage());
        }
        try {
            var decoder = StandardCharsets.UTF_8.newDecoder()
                    .onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)
                    .onUnmappableCharacter(java.nio.charset.CodingErrorAction.REPORT);
            String text = decoder.decode(java.nio.ByteBuffer.wrap(bytes)).toString();
            JsonNode node = JSON.readTree(text);
            if (node == null || !node.isObject()) {
                throw ApiError.invalid(null, "the request body must be a JSON object");
            }
            return node;
        } catch (java.nio.charset.CharacterCodingException e) {
            throw ApiError.invalid(null, "the request body is not valid UTF-8");
        } catch (JsonProcessingException e) {
            throw ApiError.invalid(null, "the request body is not valid JSON: " + e.getOriginalMessage());
        }
    }

    private void handle(ServerResponse res, Supplier<JsonNode> f) {
        try {
            json(res, 200, f.get());
        } catch (ApiError e) {
            error(res, e);
        } catch (ChatTemplateException e) {
            error(res, ApiError.invalid("messages", "chat_template", e.getMessage()));
        }
    }

    private static void error(ServerResponse res, ApiError e) {
        ObjectNode out = JSON.createObjectNode();
        ObjectNode err = out.putObject("error");
        err.put("message", e.getMessage()).put("type", e.type);
        if (e.param != null) {
            err.put("param", e.param);
        } else {
            err.putNull("param");
        }
        if (e.code != null) {
            err.put("code", e.code);
        } else {
            err.putNull("code");
        }
        json(res, e.status, out);
    }

    private static void json(ServerResponse res, int status, JsonNode body) {
        try {
            text(res, status, "application/json", JSON.writeValueAsString(body));
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void text(ServerResponse res, int status, String contentType, String body) {
        res.status(Status.create(status));
        res.header(HeaderNames.CONTENT_TYPE, contentType);
        res.send(body.getBytes(StandardCharsets.UTF_8));
    }
}
