package dev.lockstep.verify;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.openai.client.OpenAIClient;
import com.openai.client.okhttp.OpenAIOkHttpClient;
import com.openai.core.JsonValue;
import com.openai.core.http.StreamResponse;
import com.openai.helpers.ChatCompletionAccumulator;
import com.openai.models.FunctionDefinition;
import com.openai.models.FunctionParameters;
import com.openai.models.chat.completions.ChatCompletion;
import com.openai.models.chat.completions.ChatCompletionChunk;
import com.openai.models.chat.completions.ChatCompletionCreateParams;
import com.openai.models.chat.completions.ChatCompletionMessageFunctionToolCall;
import com.openai.models.chat.completions.ChatCompletionToolMessageParam;
import dev.langchain4j.agent.tool.ToolExecutionRequest;
import dev.langchain4j.agent.tool.ToolSpecification;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.json.JsonObjectSchema;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.openai.OpenAiChatModel;
import dev.lockstep.chat.ChatFormat;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.server.OpenAiServer;
import dev.lockstep.server.ServerOptions;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A tool call round trip through clients nobody here wrote, against a live server on a model whose output is fixed
 * by construction ({@link ScriptedModel}: a real qwen3_moe checkpoint and tokenizer whose greedy reply is a Hermes
 * {@code <tool_call>}): the official OpenAI Java SDK gets the call as {@code tool_calls} with {@code finish_reason
 * tool_calls}, streamed (partial deltas accumulated by the SDK's own accumulator) and not; it sends the call and the
 * tool's result back, which the template renders; LangChain4j's OpenAI client gets it as a ToolExecutionRequest.
 */
class ToolCallRoundTripTest {
    @TempDir
    static Path dir;
    private static Engine engine;
    private static OpenAiServer server;
    private static OpenAIClient client;
    private static final String ARGUMENTS = "{\"city\": \"Paris\"}";

    @BeforeAll
    static void start() {
        Path model = ScriptedModel.write(dir.resolve("scripted"));
        engine = Engine.load(model, new EngineOptions(1).withKernelWarmup(false));
        server = OpenAiServer.start(ServerOptions.defaults("scripted").withPort(0), CompletableFuture.completedFuture(engine),
                () -> ChatFormat.load(model, null));
        client = OpenAIOkHttpClient.builder().baseUrl("http://127.0.0.1:" + server.port() + "/v1").apiKey("none").maxRetries(0).build();
    }

    @AfterAll
    static void stop() {
        server.close();
        engine.close();
    }

    private static ChatCompletionCreateParams.Builder ask() {
        return ChatCompletionCreateParams.builder().model("scripted").temperature(0.0).maxCompletionTokens(32)
                .addUserMessage("What is the weather in Paris?")
                .addFunctionTool(FunctionDefinition.builder().name("get_weather").description("Get the current weather in a city")
                        .parameters(FunctionParameters.builder()
                                .putAdditionalProperty("type", JsonValue.from("object"))
                                .putAdditionalProperty("properties", JsonValue.from(Map.of("city", Map.of("type", "string"))))
                                .putAdditionalProperty("required", JsonValue.from(List.of("city")))
                                .build())
                        .build());
    }

    @Test
    void theSdkGetsTheModelsToolCallStreamedAndNotAndSendsTheResultBack() throws Exception {
        ChatCompletion c = client.chat().completions().create(ask().build());
        ChatCompletion.Choice choice = c.choices().get(0);
        assertEquals("tool_calls", choice.finishReason().asString());
        ChatCompletionMessageFunctionToolCall call = choice.message().toolCalls().orElseThrow().get(0).asFunction();
        assertEquals("get_weather", call.function().name());
        assertEquals(ARGUMENTS, call.function().arguments());
        assertTrue(choice.message().content().isEmpty(), "no answer text beside the call: " + choice.message().content());

        ChatCompletionAccumulator acc = ChatCompletionAccumulator.create();
        int callDeltas = 0;
        try (StreamResponse<ChatCompletionChunk> s = client.chat().completions().createStreaming(ask().build())) {
            for (ChatCompletionChunk chunk : (Iterable<ChatCompletionChunk>) s.stream()::iterator) {
                acc.accumulate(chunk);
                if (!chunk.choices().isEmpty() && chunk.choices().get(0).delta().toolCalls().isPresent()) {
                    callDeltas++;
                }
            }
        }
        ChatCompletion streamed = acc.chatCompletion();
        ChatCompletionMessageFunctionToolCall streamedCall = streamed.choices().get(0).message().toolCalls().orElseThrow().get(0).asFunction();
        assertEquals("get_weather", streamedCall.function().name());
        assertEquals(ARGUMENTS, streamedCall.function().arguments(), "argument pieces accumulated by the SDK");
        assertTrue(callDeltas >= 2, "the call's name went out before its arguments were complete: " + callDeltas + " tool_calls deltas");
        assertEquals("tool_calls", streamed.choices().get(0).finishReason().asString());

        // the round trip: the assistant's call and the tool's result go back; the template renders them
        ChatCompletion next = client.chat().completions().create(ask()
                .addMessage(choice.message())
                .addMessage(ChatCompletionToolMessageParam.builder().toolCallId(call.id()).content("{\"temperature\": 21}").build())
                .build());
        assertEquals("get_weather", next.choices().get(0).message().toolCalls().orElseThrow().get(0).asFunction().function().name());
        assertTrue(next.usage().orElseThrow().promptTokens() > c.usage().orElseThrow().promptTokens(), "the result is in the prompt");
        String rendered = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/apply-template"))
                .POST(HttpRequest.BodyPublishers.ofString("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\","
                        + " \"tool_calls\": [{\"id\": \"" + call.id() + "\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\","
                        + " \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}}]}, {\"role\": \"tool\", \"tool_call_id\": \"" + call.id()
                        + "\", \"content\": \"21 degrees\"}]}")).build(), HttpResponse.BodyHandlers.ofString()).body();
        // what Python's jinja2 renders for the same messages (the arguments string parsed into an object, as HF expects)
        String expected = "user: hiassistant: [{\"id\": \"" + call.id() + "\", \"type\": \"function\", \"function\": {\"name\": \"get_weather\","
                + " \"arguments\": {\"city\": \"Paris\"}}}]tool: 21 degrees<|assistant|>";
        assertEquals(expected, new com.fasterxml.jackson.databind.ObjectMapper().readTree(rendered).get("prompt").asText());
    }

    @Test
    void langChain4jsOpenAiClientGetsAToolExecutionRequest() {
        OpenAiChatModel model = OpenAiChatModel.builder().baseUrl("http://127.0.0.1:" + server.port() + "/v1").apiKey("none")
                .modelName("scripted").temperature(0.0).build();
        ChatResponse r = model.chat(ChatRequest.builder().messages(UserMessage.from("What is the weather in Paris?"))
                .toolSpecifications(ToolSpecification.builder().name("get_weather")
                        .parameters(JsonObjectSchema.builder().addStringProperty("city").required("city").build()).build())
                .build());
        ToolExecutionRequest call = r.aiMessage().toolExecutionRequests().get(0);
        assertEquals("get_weather", call.name());
        assertEquals(ARGUMENTS, call.arguments());
        assertEquals(dev.langchain4j.model.output.FinishReason.TOOL_EXECUTION, r.finishReason());
    }
}
