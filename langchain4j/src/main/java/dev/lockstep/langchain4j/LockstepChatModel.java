package dev.lockstep.langchain4j;

import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.lockstep.chat.ChatFormat;
import dev.lockstep.chat.ChatRun;
import dev.lockstep.engine.Engine;
import java.util.Objects;

/**
 * A LangChain4j {@link ChatModel} on an in-process {@link Engine}: each call renders the conversation with the model's
 * chat template ({@link ChatFormat}), generates in a new session (turns that repeat a conversation's start reuse its KV
 * pages through the engine's prefix cache) and maps the model's tool calls to {@code ToolExecutionRequest}s.
 * Thread-safe: concurrent calls are batched by the engine's scheduler. The engine stays the caller's to close.
 *
 * <pre>{@code
 * ChatModel model = LockstepChatModel.builder().engine(engine).chatFormat(ChatFormat.load(dir, null)).build();
 * String answer = model.chat("Who are you?");
 * }</pre>
 */
public final class LockstepChatModel implements ChatModel {
    private final Engine engine;
    private final ChatFormat format;
    private final LockstepDefaults defaults;
    private final String modelName;

    private LockstepChatModel(Builder b) {
        this.engine = Objects.requireNonNull(b.engine, "engine");
        this.format = Objects.requireNonNull(b.format, "chatFormat");
        this.defaults = new LockstepDefaults(b.maxTokens, b.temperature, b.seed);
        this.modelName = b.modelName != null ? b.modelName : engine.modelDir().getFileName().toString();
    }

    public static Builder builder() {
        return new Builder();
    }

    @Override
    public ChatResponse doChat(ChatRequest request) {
        String prompt = Conversations.prompt(format, request);
        try {
            ChatRun.Result r = ChatRun.run(engine, Conversations.generateRequest(engine, prompt, request, defaults),
                    format.parser(prompt, Conversations.idPrefix()), null);
            return Conversations.response(r, modelName);
        } catch (ChatRun.Aborted e) {
            throw new IllegalStateException("generation aborted", e.getCause()); // no listener: cannot happen
        }
    }

    /** Builds a {@link LockstepChatModel}: the engine and chat format are required. */
    public static final class Builder {
        Engine engine;
        ChatFormat format;
        int maxTokens = 512;
        float temperature = 0.7f;
        long seed = 42;
        String modelName;

        public Builder engine(Engine e) {
            this.engine = e;
            return this;
        }

        public Builder chatFormat(ChatFormat f) {
            this.format = f;
            return this;
        }

        /** New tokens per reply when the request does not say (default 512; the context's room caps it). */
        public Builder maxTokens(int n) {
            this.maxTokens = n;
            return this;
        }

        public Builder temperature(float t) {
            this.temperature = t;
            return this;
        }

        /** The sampling seed: the same request gives the same reply (default 42). */
        public Builder seed(long s) {
            this.seed = s;
            return this;
        }

        public Builder modelName(String name) {
            this.modelName = name;
            return this;
        }

        public LockstepChatModel build() {
            return new LockstepChatModel(this);
        }

        /** The streaming model with the same settings. */
        public LockstepStreamingChatModel buildStreaming() {
            return new LockstepStreamingChatModel(this);
        }
    }
}
