package dev.lockstep.verify;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.StreamingChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.model.openai.OpenAiChatModel;
import dev.langchain4j.model.openai.OpenAiStreamingChatModel;
import dev.lockstep.chat.ChatFormat;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.SamplingParams;
import dev.lockstep.engine.Session;
import dev.lockstep.langchain4j.LockstepChatModel;
import dev.lockstep.server.OpenAiServer;
import dev.lockstep.server.ServerOptions;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * LangChain4j both ways: Lockstep as an in-process ChatModel / StreamingChatModel, and LangChain4j's own OpenAI client
 * against a live {@code serve}. Every reply equals the engine's greedy reply to the same rendered prompt.
 */
class LangChain4jTest {
    private static Engine engine;
    private static ChatFormat format;
    private static OpenAiServer server;

    @BeforeAll
    static void start() {
        engine = Engine.load(Golden.bundledModel(), EngineOptions.defaults());
        format = ChatFormat.load(Golden.bundledModel(), "plain");
        server = OpenAiServer.start(ServerOptions.defaults("kjv").withPort(0), CompletableFuture.completedFuture(engine), () -> format);
    }

    @AfterAll
    static void stop() {
        server.close();
        engine.close();
    }

    private static String expected(int maxTokens) {
        String prompt = format.render(List.of(Map.of("role", "system", "content", "You are the King James Bible."),
                Map.of("role", "user", "content", "Genesis 1:1")), null, true, Map.of());
        try (Session s = engine.newSession()) {
            return s.submit(GenerateRequest.of(engine.tokenizer().encode(prompt), maxTokens).withSampling(SamplingParams.GREEDY)).await().text();
        }
    }

    private static ChatRequest request() {
        return ChatRequest.builder().messages(SystemMessage.from("You are the King James Bible."), UserMessage.from("Genesis 1:1"))
                .temperature(0.0).maxOutputTokens(12).build();
    }

    @Test
    void inProcessChatModelAndStreamingChatModel() throws Exception {
        LockstepChatModel.Builder b = LockstepChatModel.builder().engine(engine).chatFormat(format).modelName("kjv");
        ChatResponse r = b.build().chat(request());
        assertEquals(expected(12), r.aiMessage().text());
        assertEquals(12, r.tokenUsage().outputTokenCount());
        assertEquals(expected(12), stream(b.buildStreaming()));
    }

    @Test
    void langChain4jsOpenAiClientAgainstServe() throws Exception {
        String url = "http://127.0.0.1:" + server.port() + "/v1";
        ChatModel chat = OpenAiChatModel.builder().baseUrl(url).apiKey("none").modelName("kjv").build();
        ChatResponse r = chat.chat(request());
        assertEquals(expected(12), r.aiMessage().text());
        assertTrue(r.aiMessage().toolExecutionRequests().isEmpty(), r.aiMessage().toString());
        assertEquals(expected(12), stream(OpenAiStreamingChatModel.builder().baseUrl(url).apiKey("none").modelName("kjv").build()));
    }

    private static String stream(StreamingChatModel model) throws Exception {
        StringBuilder pieces = new StringBuilder();
        CompletableFuture<ChatResponse> done = new CompletableFuture<>();
        model.chat(request(), new StreamingChatResponseHandler() {
            @Override
            public void onPartialResponse(String partial) {
                pieces.append(partial);
            }

            @Override
            public void onCompleteResponse(ChatResponse response) {
                done.complete(response);
            }

            @Override
            public void onError(Throwable error) {
                done.completeExceptionally(error);
            }
        });
        ChatResponse r = done.get(60, TimeUnit.SECONDS);
        assertEquals(r.aiMessage().text(), pieces.toString());
        return pieces.toString();
    }
}
