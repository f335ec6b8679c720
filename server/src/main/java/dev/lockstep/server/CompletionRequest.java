package dev.lockstep.server;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lockstep.chat.ChatFormat;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.LogitAdjustments;
import dev.lockstep.engine.SamplingParams;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.Supplier;

/**
 * A completion request as the server runs it, parsed and checked from OpenAI's JSON: the prompt's tokens (rendered
 * with the chat template for chat), the engine request (sampling, stops, penalties, logit bias, log-probabilities),
 * how many choices, whether to stream, and how to answer.
 */
record CompletionRequest(boolean chat, String id, int[] prompt, String promptText, GenerateRequest generate, long seed, int n,
                         boolean stream, boolean includeUsage, int topLogprobs, boolean logprobs, ChatFormat format, boolean tools) {
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * The request's fields, each checked (a wrong one is an {@link ApiError} naming it): {@code chat} for
     * {@code /v1/chat/completions} (messages rendered with {@code chatFormat}, which may refuse), else
     * {@code /v1/completions}; {@code id} is the response's id.
     */
    static CompletionRequest parse(JsonNode body, boolean chat, Engine e, Supplier<ChatFormat> chatFormat, ServerOptions options, String id) {
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
            f = chatFormat.get();
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
        return new CompletionRequest(chat, id, prompt, promptText, g, seed, n, stream, includeUsage, topLogprobs, logprobs, f, hasTools);
    }

    static JsonNode messages(JsonNode body) {
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

    static String render(ChatFormat f, JsonNode body) {
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

    static int[] tokenIds(JsonNode body, String field, Engine e) {
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
}
