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
import dev.lockstep.engine.LogitAdjustments;
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
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadLocalRandom;
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
            text = chat().render(ChatFormat.messages(messages(body)), null, Fields.bool(body, "add_generation_prompt", true), Map.of());
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
        int[] ids = tokenIds(body, "tokens", e);
        return JSON.createObjectNode().put("content", e.tokenizer().decode(ids));
    }

    private ObjectNode applyTemplate(JsonNode body) {
        ready();
        ChatFormat f = chat();
        return JSON.createObjectNode().put("prompt", render(f, body));
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
        Request r;
        try {
            r = parse(body(req), chat);
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
            if (r.stream) {
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

    /** A parsed request: what to run, n times, and how to answer. */
    private record Request(boolean chat, String id, int[] prompt, String promptText, GenerateRequest generate, long seed, int n,
                           boolean stream, boolean includeUsage, int topLogprobs, boolean logprobs, ChatFormat format, boolean tools) {
    }

    private Request parse(JsonNode body, boolean chat) {
        Engine e = ready();
        String model = Fields.string(body, "model", options.modelName());
        if (!model.equals(options.modelName())) {
            throw new ApiError(404, "invalid_request_error", "model", "model_not_found", "the model '" + model + "' does not exist; this server runs '" + options.modelName() + "'");
        }
        int capacity = e.model().maxPositions();
        int n = Fields.integer(body, "n", 1, 1, 16);
        boolean stream = Fields.bool(body, "stream", false);
        boolean includeUsage = false;
        JsonNode so = body.get("stream_options");
        if (so != null && !so.isNull()) {
            if (!so.isObject()) {
                throw ApiError.invalid("stream_options", "'stream_options' must be an object");
            }
            includeUsage = Fields.bool(so, "include_usage", false);
        }
        ChatFormat f = null;
        String promptText;
        int[] prompt;
        boolean hasTools = false;
        if (chat) {
            f = chat();
            JsonNode rf = body.get("response_format");
            if (rf != null && !rf.isNull() && !(rf.isObject() && "text".equals(rf.path("type").asText()))) {
                throw ApiError.invalid("response_format", "'response_format' supports only {\"type\": \"text\"}, got " + Fields.brief(rf));
            }
            hasTools = toolsOf(body) != null;
            promptText = render(f, body);
            prompt = e.tokenizer().encode(promptText);
        } else {
            JsonNode p = body.get("prompt");
            if (p == null || p.isNull()) {
                throw ApiError.invalid("prompt", "'prompt' is required: a string or an array of token ids");
            }
            if (p.isTextual()) {
                promptText = p.asText();
                prompt = e.tokenizer().encode(promptText);
            } else if (p.isArray() && p.size() == 1 && p.get(0).isTextual()) {
                promptText = p.get(0).asText();
                prompt = e.tokenizer().encode(promptText);
            } else if (p.isArray()) {
                prompt = tokenIds(body, "prompt", e);
                promptText = e.tokenizer().decode(prompt);
            } else {
                throw ApiError.invalid("prompt", "'prompt' must be a string or an array of token ids, got " + Fields.brief(p));
            }
        }
        if (prompt.length == 0) {
            throw ApiError.invalid(chat ? "messages" : "prompt", "the prompt is empty");
        }
        if (prompt.length >= capacity) {
            throw ApiError.invalid(chat ? "messages" : "prompt", "context_length_exceeded",
                    "the prompt has " + prompt.length + " tokens; this model's context holds " + capacity);
        }
        int room = capacity - prompt.length;
        String maxField = chat && Fields.present(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
        int maxTokens = Fields.integer(body, maxField, Math.min(options.maxTokens(), room), 0, options.maxTokens());
        if (maxTokens > room) {
            throw ApiError.invalid(maxField, "context_length_exceeded", "the prompt (" + prompt.length + " tokens) + " + maxField + " ("
                    + maxTokens + ") exceed this model's context of " + capacity + " tokens");
        }
        float temperature = (float) Fields.number(body, "temperature", 1.0, 0, 2);
        float topP = (float) Fields.number(body, "top_p", 1.0, Double.MIN_VALUE, 1);
        int topK = Fields.integer(body, "top_k", 0, -1, 1 << 20);
        long seed = Fields.seed(body, "seed", ThreadLocalRandom.current().nextLong());
        float minP = (float) Fields.number(body, "min_p", 0, 0, 1);
        float presence = (float) Fields.number(body, "presence_penalty", 0, -2, 2);
        float frequency = (float) Fields.number(body, "frequency_penalty", 0, -2, 2);
        float repetition = (float) Fields.number(body, "repetition_penalty", 1, 0.01, 10);
        Map<Integer, Float> bias = logitBias(body, e);
        boolean logprobs;
        int topLogprobs;
        if (chat) {
            logprobs = Fields.bool(body, "logprobs", false);
            topLogprobs = Fields.integer(body, "top_logprobs", 0, 0, GenerateRequest.MAX_LOGPROBS);
            if (topLogprobs > 0 && !logprobs) {
                throw ApiError.invalid("top_logprobs", "'top_logprobs' needs 'logprobs': true");
            }
        } else {
            topLogprobs = Fields.integer(body, "logprobs", 0, 0, GenerateRequest.MAX_LOGPROBS);
            logprobs = Fields.present(body, "logprobs");
        }
        GenerateRequest g = GenerateRequest.of(prompt, maxTokens)
                .withSampling(new SamplingParams(temperature, Math.max(0, topK), topP, seed))
                .withStop(Fields.stops(body))
                .withIgnoreEos(Fields.bool(body, "ignore_eos", false))
                .withAdjustments(new LogitAdjustments(bias, repetition, frequency, presence, -1, minP))
                .withLogprobs(logprobs ? Math.max(1, topLogprobs) : 0);
        String id = (chat ? "chatcmpl-" : "cmpl-") + Long.toHexString(System.currentTimeMillis()) + Long.toHexString(ids.incrementAndGet());
        return new Request(chat, id, prompt, promptText, g, seed, n, stream, includeUsage, topLogprobs, logprobs, f, hasTools);
    }

    private static JsonNode messages(JsonNode body) {
        JsonNode m = body.get("messages");
        if (m == null || !m.isArray() || m.isEmpty()) {
            throw ApiError.invalid("messages", "'messages' must be a non-empty array of {role, content} objects");
        }
        for (int i = 0; i < m.size(); i++) {
            JsonNode msg = m.get(i);
            if (!msg.isObject() || !msg.path("role").isTextual()) {
                throw ApiError.invalid("messages[" + i + "]", "'messages[" + i + "]' must be an object with a string 'role'");
            }
            JsonNode c = msg.get("content");
            if (c != null && !c.isNull() && !c.isTextual() && !c.isArray()) {
                throw ApiError.invalid("messages[" + i + "].content", "'messages[" + i + "].content' must be a string or an array of parts");
            }
        }
        return m;
    }

    /** The request's tools for the template, null when it has none or {@code tool_choice} is "none". */
    private static JsonNode toolsOf(JsonNode body) {
        JsonNode tools = body.get("tools");
        if (tools == null || tools.isNull()) {
            return null;
        }
        if (!tools.isArray()) {
            throw ApiError.invalid("tools", "'tools' must be an array of {type: function, function: {...}} objects");
        }
        for (int i = 0; i < tools.size(); i++) {
            JsonNode t = tools.get(i);
            if (!t.isObject() || !"function".equals(t.path("type").asText()) || !t.path("function").path("name").isTextual()) {
                throw ApiError.invalid("tools[" + i + "]", "'tools[" + i + "]' must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
            }
        }
        JsonNode choice = body.get("tool_choice");
        if (choice != null && !choice.isNull()) {
            if (choice.isTextual() && choice.asText().equals("none")) {
                return null;
            }
            if (!(choice.isTextual() && (choice.asText().equals("auto") || choice.asText().equals("required"))) && !choice.isObject()) {
                throw ApiError.invalid("tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or a function object");
            }
        }
        return tools.isEmpty() ? null : tools;
    }

    private static String render(ChatFormat f, JsonNode body) {
        JsonNode tools = toolsOf(body);
        Map<String, Object> kwargs = new HashMap<>();
        JsonNode k = body.get("chat_template_kwargs");
        if (k != null && !k.isNull()) {
            if (!k.isObject()) {
                throw ApiError.invalid("chat_template_kwargs", "'chat_template_kwargs' must be an object");
            }
            k.properties().forEach(en -> kwargs.put(en.getKey(), JSON.convertValue(en.getValue(), Object.class)));
        }
        List<Object> toolList = tools == null ? null : new ArrayList<>(JSON.convertValue(tools, List.class));
        return f.render(ChatFormat.messages(messages(body)), toolList, Fields.bool(body, "add_generation_prompt", true), kwargs);
    }

    private static Map<Integer, Float> logitBias(JsonNode body, Engine e) {
        JsonNode b = body.get("logit_bias");
        Map<Integer, Float> out = new HashMap<>();
        if (b == null || b.isNull()) {
            return out;
        }
        if (!b.isObject() || b.size() > 1024) {
            throw ApiError.invalid("logit_bias", "'logit_bias' must be an object of at most 1024 token id -> bias entries");
        }
        int vocab = e.model().vocabSize();
        for (var en : b.properties()) {
            int id;
            try {
                id = Integer.parseInt(en.getKey());
            } catch (NumberFormatException x) {
                throw ApiError.invalid("logit_bias", "'logit_bias' keys must be token ids, got \"" + en.getKey() + "\"");
            }
            if (id < 0 || id >= vocab || !en.getValue().isNumber() || Math.abs(en.getValue().asDouble()) > 100) {
                throw ApiError.invalid("logit_bias", "'logit_bias' entry " + en.getKey() + ": ids are in [0, " + vocab + "), biases in [-100, 100]");
            }
            out.put(id, (float) en.getValue().asDouble());
        }
        return out;
    }

    private static int[] tokenIds(JsonNode body, String field, Engine e) {
        JsonNode a = body.get(field);
        if (a == null || !a.isArray()) {
            throw ApiError.invalid(field, "'" + field + "' must be an array of token ids");
        }
        int vocab = e.model().vocabSize();
        int[] ids = new int[a.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode t = a.get(i);
            if (!t.isIntegralNumber() || !t.canConvertToInt() || t.asInt() < 0 || t.asInt() >= vocab) {
                throw ApiError.invalid(field, "'" + field + "[" + i + "]' must be a token id in [0, " + vocab + "), got " + Fields.brief(t));
            }
            ids[i] = t.asInt();
        }
        return ids;
    }

    /** One choice's outcome. */
    private record Choice(String text, String reasoning, List<ChatDelta.ToolCall> calls, FinishReason reason, Generation.Usage usage,
                          ArrayNode logprobs, RuntimeException error) {
    }

    /** Runs choice {@code index} to the end, calling {@code sink} with each delta (streaming) as it comes. */
    private Choice run(Request r, int index, DeltaSink sink) throws IOException {
        Engine e = ready();
        GenerateRequest g = index == 0 ? r.generate : r.generate.withSampling(withSeed(r.generate.sampling(), r.seed + index));
        OutputParser parser = r.chat ? r.format.parser(r.promptText, "call_" + r.id.substring(r.id.indexOf('-') + 1) + "_" + index + "_") : null;
        ArrayNode logprobs = r.logprobs ? JSON.createArrayNode() : null;
        ChatRun.Result result;
        try {
            result = ChatRun.run(e, g, parser, (ev, deltas, moreReady) -> {
                ObjectNode lp = logprobs != null && ev != null && ev.id() >= 0 ? logprob(e, ev, r.topLogprobs) : null;
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

    private void complete(ServerResponse res, Request r) {
        List<Choice> choices = new ArrayList<>();
        // the n choices run at once, each in its own session: the scheduler batches their steps
        try (var pool = java.util.concurrent.Executors.newVirtualThreadPerTaskExecutor()) {
            List<java.util.concurrent.Future<Choice>> running = new ArrayList<>();
            for (int i = 0; i < r.n; i++) {
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
        out.put("id", r.id).put("object", r.chat ? "chat.completion" : "text_completion").put("created", System.currentTimeMillis() / 1000)
                .put("model", options.modelName());
        ArrayNode arr = out.putArray("choices");
        int generated = 0;
        for (int i = 0; i < choices.size(); i++) {
            Choice c = choices.get(i);
            generated += c.usage.generatedTokens();
            ObjectNode ch = arr.addObject().put("index", i);
            if (r.chat) {
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

    private void stream(ServerResponse res, Request r) {
        res.status(Status.OK_200);
        res.header(HeaderNames.CONTENT_TYPE, "text/event-stream; charset=utf-8");
        res.header(HeaderValues.CACHE_NO_CACHE);
        long created = System.currentTimeMillis() / 1000;
        int generated = 0;
        int cached = 0;
        try (OutputStream out = res.outputStream()) {
            for (int i = 0; i < r.n; i++) {
                final int index = i;
                if (r.chat) {
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
                        if (r.chat) {
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
                if (r.chat) {
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
            if (r.includeUsage) {
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

    private ObjectNode chunk(Request r, long created, int index) {
        ObjectNode c = JSON.createObjectNode();
        c.put("id", r.id).put("object", r.chat ? "chat.completion.chunk" : "text_completion").put("created", created).put("model", options.modelName());
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

    private static ObjectNode usage(Request r, int cached, int generated) {
        int promptTokens = r.prompt.length;
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
