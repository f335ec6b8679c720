package dev.lockstep.langchain4j;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.langchain4j.agent.tool.ToolExecutionRequest;
import dev.langchain4j.agent.tool.ToolSpecification;
import dev.langchain4j.data.message.AiMessage;
import dev.langchain4j.data.message.SystemMessage;
import dev.langchain4j.data.message.ToolExecutionResultMessage;
import dev.langchain4j.data.message.UserMessage;
import dev.langchain4j.model.chat.request.ChatRequest;
import dev.langchain4j.model.chat.request.json.JsonObjectSchema;
import dev.lockstep.chat.ChatFormat;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * A LangChain4j conversation with a tool round trip (tool specification, the assistant's ToolExecutionRequest, the
 * tool's result) renders exactly as HF transformers renders the same OpenAI-style conversation with Qwen3's template
 * (the chat module's golden, scenario {@code tool_round_trip}).
 */
class ConversationsTest {
    @SuppressWarnings("unchecked")
    @Test
    void aToolRoundTripRendersLikeHf() throws Exception {
        Path templates = Path.of("../chat/src/test/resources/chat-templates");
        Path model = Files.createTempDirectory("qwen3-template");
        Files.writeString(model.resolve("chat_template.jinja"), Files.readString(templates.resolve("Qwen-Qwen3-0.6B.jinja")));
        Files.writeString(model.resolve("tokenizer_config.json"), "{\"bos_token\": \"<|bos|>\", \"eos_token\": \"<|eos|>\"}");
        ChatFormat format = ChatFormat.load(model, null);
        ToolSpecification weather = ToolSpecification.builder().name("get_weather").description("Get the current weather in a city")
                .parameters(JsonObjectSchema.builder()
                        .addStringProperty("city", "City name, e.g. Zürich")
                        .addEnumProperty("unit", List.of("celsius", "fahrenheit"))
                        .required("city").build())
                .build();
        ChatRequest request = ChatRequest.builder().messages(
                SystemMessage.from("You are a helpful assistant"),
                UserMessage.from("What is the weather in Zürich?"),
                AiMessage.from(List.of(ToolExecutionRequest.builder().id("call_1").name("get_weather").arguments("{\"city\": \"Zürich\"}").build())),
                ToolExecutionResultMessage.from("call_1", "get_weather", "{\"temperature\": 21}"))
                .toolSpecifications(weather).build();
        Map<String, Object> goldens = new ObjectMapper().readValue(templates.resolve("goldens.json").toFile(), Map.class);
        String expected = null;
        for (Map<String, Object> g : (List<Map<String, Object>>) goldens.get("renders")) {
            if (g.get("template").equals("Qwen-Qwen3-0.6B.jinja") && g.get("scenario").equals("tool_round_trip")) {
                expected = (String) g.get("output");
            }
        }
        assertEquals(expected, Conversations.prompt(format, request));
    }
}
