package dev.lockstep.langchain4j;

import dev.langchain4j.model.chat.StreamingChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.langchain4j.model.chat.response.CompleteToolCall;
import dev.langchain4j.model.chat.response.PartialThinking;
import dev.langchain4j.model.chat.response.PartialToolCall;
import dev.langchain4j.model.chat.response.StreamingChatResponseHandler;
import dev.langchain4j.agent.tool.ToolExecutionRequest;
import dev.lockstep.chat.ChatDelta;
import dev.lockstep.chat.ChatFormat;
import dev.lockstep.chat.ChatRun;
import dev.lockstep.engine.Engine;
import java.util.Objects;

/**
 * A LangChain4j {@link StreamingChatModel} on an in-process {@link Engine}: like {@link LockstepChatModel}, with answer
 * text delivered piece by piece ({@code onPartialResponse}, never half a UTF-8 character), reasoning as
 * {@code onPartialThinking}, each tool call as {@code onCompleteToolCall} once it has parsed, then
 * {@code onCompleteResponse}. Runs on a virtual thread per call; a handler that throws cancels the generation at the
 * scheduler's next step and gets {@code onError}.
 */
public final class LockstepStreamingChatModel implements StreamingChatModel {
    private final Engine engine;
    private final ChatFormat format;
    private final LockstepDefaults defaults;
    private final String modelName;

    LockstepStreamingChatModel(LockstepChatModel.Builder b) {
        this.engine = Objects.requireNonNull(b.engine, "engine");
        this.format = Objects.requireNonNull(b.format, "chatFormat");
        this.defaults = new LockstepDefaults(b.maxTokens, b.temperature, b.seed);
        this.modelName = b.modelName != null ? b.modelName : engine.modelDir().getFileName().toString();
    }

    /** The same builder as {@link LockstepChatModel}'s; finish with {@link LockstepChatModel.Builder#buildStreaming()}. */
    public static LockstepChatModel.Builder builder() {
        return LockstepChatModel.builder();
    }

    @Override
    public void doChat(ChatRequest request, StreamingChatResponseHandler handler) {
        Thread.ofVirtual().name("lockstep-langchain4j-stream").start(() -> {
            ChatResponse response;
            try {
                String prompt = Conversations.prompt(format, request);
                java.util.Map<Integer, ChatDelta.ToolCallStart> started = new java.util.HashMap<>();
                ChatRun.Result r = ChatRun.run(engine, Conversations.generateRequest(engine, prompt, request, defaults),
                        format.parser(prompt, Conversations.idPrefix()), (event, deltas, moreReady) -> {
                            for (ChatDelta d : deltas) {
                                switch (d) {
                                    case ChatDelta.Content c -> {
                                        if (!c.text().isEmpty()) {
                                            handler.onPartialResponse(c.text());
                                        }
                                    }
                                    case ChatDelta.Reasoning t -> handler.onPartialThinking(new PartialThinking(t.text()));
                                    case ChatDelta.ToolCall t -> handler.onCompleteToolCall(new CompleteToolCall(t.index(),
                                            ToolExecutionRequest.builder().id(t.id()).name(t.name()).arguments(t.arguments()).build()));
                                    case ChatDelta.ToolCallStart t -> {
                                        started.put(t.index(), t);
                                    }
                                    case ChatDelta.ToolCallArguments a -> {
                                        ChatDelta.ToolCallStart t = started.get(a.index());
                                        handler.onPartialToolCall(PartialToolCall.builder().index(a.index()).id(t.id()).name(t.name())
                                                .partialArguments(a.text()).build());
                                    }
                                }
                            }
                        });
                response = Conversations.response(r, modelName);
            } catch (ChatRun.Aborted e) {
                handler.onError(e.getCause());
                return;
            } catch (RuntimeException e) {
                handler.onError(e);
                return;
            }
            handler.onCompleteResponse(response);
        });
    }
}
