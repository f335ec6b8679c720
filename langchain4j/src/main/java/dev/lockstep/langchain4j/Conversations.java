package dev.lockstep.langchain4j;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.langchain4j.agent.tool.ToolExecutionRequest;
import dev.langchain4j.agent.tool.ToolSpecification;
import dev.langchain4j.data.message.AiMessage;
import dev.langchain4j.data.message.ChatMessage;
import dev.langchain4j.data.message.Content;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.TextContent;
import dev.langchain4j.data.message.ToolExecutionResultMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.internal.JsonSchemaElementUtils;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.output.FinishReason;
import dev.langchain4j.model.output.TokenUsage;
import dev.lockstep.chat.ChatDelta;
import dev.lockstep.chat.ChatFormat;
import dev.lockstep.chat.ChatRun;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.SamplingParams;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

/** LangChain4j requests as Lockstep prompts and Lockstep replies as LangChain4j responses; shared by both models. */
final class Conversations {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final AtomicLong IDS = new AtomicLong();

    private Conversations() {
    }

    /** The request's prompt: its messages and tools rendered with the model's chat template. */
    static String prompt(ChatFormat format, ChatRequest request) {
        List<Object> messages = new ArrayList<>();
        for (ChatMessage m : request.messages()) {
            messages.add(message(m));
        }
        List<ToolSpecification> specs = request.toolSpecifications();
        List<Object> tools = null;
        if (specs != null && !specs.isEmpty()) {
            tools = new ArrayList<>();
            for (ToolSpecification t : specs) {
                Map<String, Object> fn = new LinkedHashMap<>();
                fn.put("name", t.name());
                if (t.description() != null) {
                    fn.put("description", t.description());
                }
                fn.put("parameters", t.parameters() != null ? JsonSchemaElementUtils.toMap(t.parameters())
                        : ordered("type", "object", "properties", Map.of()));
                tools.add(ordered("type", "function", "function", fn));
            }
        }
        return format.render(messages, tools, true, Map.of());
    }

    /** A map in the order written: templates print tools and calls with tojson, key order included. */
    private static Map<String, Object> ordered(Object... keysAndValues) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < keysAndValues.length; i += 2) {
            m.put((String) keysAndValues[i], keysAndValues[i + 1]);
        }
        return m;
    }

    private static Map<String, Object> message(ChatMessage m) {
        Map<String, Object> out = new LinkedHashMap<>();
        switch (m) {
            case SystemMessage s -> {
                out.put("role", "system");
                out.put("content", s.text());
            }
            case UserMessage u -> {
                out.put("role", "user");
                StringBuilder text = new StringBuilder();
                for (Content c : u.contents()) {
                    if (!(c instanceof TextContent t)) {
                        throw new IllegalArgumentException("Lockstep runs text models: a user message holds " + c.type());
                    }
                    text.append(t.text());
                }
                out.put("content", text.toString());
            }
            case AiMessage a -> {
                out.put("role", "assistant");
                out.put("content", a.text() == null ? "" : a.text());
                if (a.hasToolExecutionRequests()) {
                    List<Object> calls = new ArrayList<>();
                    for (ToolExecutionRequest r : a.toolExecutionRequests()) {
                        Object args;
                        try {
                            args = JSON.readValue(r.arguments(), Object.class);
                        } catch (Exception e) {
                            args = r.arguments(); // not JSON: the template gets the string
                        }
                        calls.add(ordered("id", r.id() == null ? "" : r.id(), "type", "function",
                                "function", ordered("name", r.name(), "arguments", args)));
                    }
                    out.put("tool_calls", calls);
                }
            }
            case ToolExecutionResultMessage t -> {
                out.put("role", "tool");
                out.put("tool_call_id", t.id());
                out.put("name", t.toolName());
                out.put("content", t.text());
            }
            default -> throw new IllegalArgumentException("unsupported message type " + m.type());
        }
        return out;
    }

    /** The generation: the request's parameters where given, else the model's defaults. */
    static GenerateRequest generateRequest(Engine engine, String prompt, ChatRequest request, LockstepDefaults defaults) {
        int[] ids = engine.tokenizer().encode(prompt);
        Integer max = request.maxOutputTokens();
        int room = engine.model().maxPositions() - ids.length;
        int maxTokens = Math.max(0, Math.min(max != null ? max : defaults.maxTokens(), room));
        Double t = request.temperature();
        Double p = request.topP();
        Integer k = request.topK();
        SamplingParams sampling = new SamplingParams(t != null ? t.floatValue() : defaults.temperature(), k != null ? k : 0,
                p != null ? p.floatValue() : 1f, defaults.seed());
        GenerateRequest g = GenerateRequest.of(ids, maxTokens).withSampling(sampling);
        List<String> stops = request.stopSequences();
        return stops != null && !stops.isEmpty() ? g.withStop(stops) : g;
    }

    static String idPrefix() {
        return "call_" + Long.toHexString(System.nanoTime()) + "_" + IDS.incrementAndGet() + "_";
    }

    static ChatResponse response(ChatRun.Result r, String modelName) {
        if (r.error() != null) {
            throw r.error();
        }
        List<ToolExecutionRequest> calls = new ArrayList<>();
        for (ChatDelta.ToolCall c : r.toolCalls()) {
            calls.add(ToolExecutionRequest.builder().id(c.id()).name(c.name()).arguments(c.arguments()).build());
        }
        AiMessage.Builder message = AiMessage.builder().text(r.text().isEmpty() && !calls.isEmpty() ? null : r.text());
        if (!r.reasoning().isEmpty()) {
            message.thinking(r.reasoning());
        }
        if (!calls.isEmpty()) {
            message.toolExecutionRequests(calls);
        }
        FinishReason reason = !calls.isEmpty() ? FinishReason.TOOL_EXECUTION : switch (r.finishReason()) {
            case STOP -> FinishReason.STOP;
            case LENGTH -> FinishReason.LENGTH;
            case CANCELLED, ERROR -> FinishReason.OTHER;
        };
        return ChatResponse.builder().aiMessage(message.build()).modelName(modelName).finishReason(reason)
                .tokenUsage(new TokenUsage(r.usage().promptTokens(), r.usage().generatedTokens())).build();
    }
}
