package dev.lockstep.examples;

import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.ChatModel;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.response.ChatResponse;
import dev.lockstep.chat.ChatFormat;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.langchain4j.LockstepChatModel;
import java.nio.file.Path;

/**
 * A LangChain4j application whose ChatModel is Lockstep in process: no server, no network. The bundled model has no
 * chat template (it was not trained to chat), so this uses the documented "plain" one; a chat model's own template is
 * picked up with {@code ChatFormat.load(dir, null)}.
 */
public final class Chat {
    public static void main(String[] args) {
        Path model = Path.of(args.length > 0 ? args[0] : "models/kjv-qwen3moe");
        try (Engine engine = Engine.load(model, EngineOptions.defaults())) {
            ChatModel chat = LockstepChatModel.builder().engine(engine).chatFormat(ChatFormat.load(model, "plain")).build();
            ChatResponse r = chat.chat(ChatRequest.builder()
                    .messages(SystemMessage.from("You are the King James Bible."), UserMessage.from("In the beginning God created"))
                    .temperature(0.0).maxOutputTokens(24).build());
            System.out.println(r.aiMessage().text());
            System.err.println("example: " + r.tokenUsage() + ", finish " + r.finishReason());
        }
    }
}
