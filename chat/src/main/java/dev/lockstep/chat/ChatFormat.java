package dev.lockstep.chat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * How a model chats: its chat template, the special-token strings the template prints, and the parser that splits
 * its replies into answer, reasoning and tool calls (chosen from the markers the template itself uses: harmony's
 * {@code <|channel|>}, Hermes' {@code <tool_call>}, Mistral's {@code [TOOL_CALLS]}, Granite's {@code <|tool_call|>},
 * DeepSeek's {@code <｜tool▁calls▁begin｜>}, and {@code <think>}).
 *
 * <p>The template comes from the model directory ({@code chat_template.jinja}, else {@code chat_template} of
 * tokenizer_config.json: a string, or a list of named templates where {@code default} is used and {@code tool_use}
 * when the request has tools). A model without one (the bundled model was not trained to chat) has no chat format:
 * {@link #load} refuses, naming the way out: {@code plain} (the documented {@link #PLAIN_TEMPLATE}) or a template file.
 */
public final class ChatFormat {
    /** {@code --chat-template plain}: one line per message, {@code role: content}, then {@code assistant:}. */
    public static final String PLAIN_TEMPLATE = "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
            + "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

    private static final ObjectMapper JSON = new ObjectMapper();

    private final String name;
    private final ChatTemplate template;
    private final ChatTemplate toolTemplate;
    private final Map<String, Object> specialTokens;

    private ChatFormat(String name, ChatTemplate template, ChatTemplate toolTemplate, Map<String, Object> specialTokens) {
        this.name = name;
        this.template = template;
        this.toolTemplate = toolTemplate;
        this.specialTokens = specialTokens;
    }

    /**
     * The chat format of {@code modelDir}; {@code override} null uses the model's own template, {@code "plain"} the
     * {@link #PLAIN_TEMPLATE}, anything else is a template file's path.
     *
     * @throws ChatTemplateException when the model has no template and no override is given, or a file is unreadable
     */
    public static ChatFormat load(Path modelDir, String override) {
        Map<String, Object> special = new LinkedHashMap<>();
        JsonNode config = readJson(modelDir.resolve("tokenizer_config.json"));
        if (config != null) {
            config.properties().forEach(e -> {
                if (e.getKey().endsWith("_token")) {
                    JsonNode v = e.getValue();
                    if (v.isTextual()) {
                        special.put(e.getKey(), v.asText());
                    } else if (v.isObject() && v.path("content").isTextual()) {
                        special.put(e.getKey(), v.get("content").asText());
                    }
                }
            });
        }
        if ("plain".equals(override)) {
            return new ChatFormat("plain", ChatTemplate.of(PLAIN_TEMPLATE), null, special);
        }
        if (override != null) {
            Path file = Path.of(override);
            try {
                return new ChatFormat(file.getFileName().toString(), ChatTemplate.of(Files.readString(file, StandardCharsets.UTF_8)), null, special);
            } catch (IOException e) {
                throw new ChatTemplateException("cannot read chat template " + file + ": " + e.getMessage(), e);
            }
        }
        Path jinja = modelDir.resolve("chat_template.jinja");
        if (Files.isRegularFile(jinja)) {
            try {
                return new ChatFormat(jinja.toString(), ChatTemplate.of(Files.readString(jinja, StandardCharsets.UTF_8)), null, special);
            } catch (IOException e) {
                throw new ChatTemplateException("cannot read " + jinja + ": " + e.getMessage(), e);
            }
        }
        JsonNode t = config == null ? null : config.get("chat_template");
        if (t != null && t.isTextual()) {
            return new ChatFormat("tokenizer_config.json", ChatTemplate.of(t.asText()), null, special);
        }
        if (t != null && t.isArray()) {
            String main = null;
            String tools = null;
            for (JsonNode named : t) {
                String n = named.path("name").asText();
                if (n.equals("default")) {
                    main = named.path("template").asText();
                } else if (n.equals("tool_use")) {
                    tools = named.path("template").asText();
                }
            }
            if (main == null && t.size() > 0) {
                main = t.get(0).path("template").asText();
            }
            if (main != null) {
                return new ChatFormat("tokenizer_config.json", ChatTemplate.of(main), tools == null ? null : ChatTemplate.of(tools), special);
            }
        }
        throw new ChatTemplateException(modelDir + " has no chat template (no chat_template.jinja, no chat_template in tokenizer_config.json):"
                + " it was not trained to chat. Use /v1/completions, or --chat-template plain (one 'role: content' line per message)"
                + " or --chat-template FILE");
    }

    private static JsonNode readJson(Path file) {
        if (!Files.isRegularFile(file)) {
            return null;
        }
        try {
            return JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw new ChatTemplateException(file + " is not valid JSON: " + e.getMessage(), e);
        }
    }

    /** Where the template came from. */
    public String name() {
        return name;
    }

    /** The template the request uses ({@code tool_use} when it has tools and the model names one). */
    public ChatTemplate template(boolean hasTools) {
        return hasTools && toolTemplate != null ? toolTemplate : template;
    }

    /**
     * The prompt for {@code messages} (OpenAI message objects, normalized by {@link #messages}) and {@code tools}
     * (null: none), ending with the assistant's header when {@code addGenerationPrompt}; {@code kwargs} are extra
     * template variables ({@code enable_thinking}, {@code reasoning_effort}).
     */
    public String render(List<?> messages, List<?> tools, boolean addGenerationPrompt, Map<String, ?> kwargs) {
        Map<String, Object> variables = new LinkedHashMap<>(specialTokens);
        variables.putAll(kwargs);
        return template(tools != null && !tools.isEmpty()).render(messages, tools, addGenerationPrompt, variables);
    }

    /**
     * The parser for a reply to {@code prompt} (the rendered prompt: a prompt that ends inside {@code <think>} makes
     * the reply start as reasoning); tool-call ids are {@code idPrefix + index}.
     */
    public OutputParser parser(String prompt, String idPrefix) {
        String source = template.source() + (toolTemplate == null ? "" : toolTemplate.source());
        if (source.contains("<|channel|>")) {
            return new HarmonyParser(idPrefix);
        }
        boolean think = source.contains("<think>");
        String thinkOpen = think ? "<think>" : null;
        String thinkClose = think ? "</think>" : null;
        boolean inThink = think && prompt.stripTrailing().endsWith("<think>");
        if (source.contains("<tool_call>")) {
            return new TaggedParser(thinkOpen, thinkClose, inThink, "<tool_call>", "</tool_call>", TaggedParser.Body.HERMES, idPrefix);
        }
        if (source.contains("[TOOL_CALLS]")) {
            return new TaggedParser(thinkOpen, thinkClose, inThink, "[TOOL_CALLS]", null, TaggedParser.Body.JSON_LIST, idPrefix);
        }
        if (source.contains("<|tool_call|>")) {
            return new TaggedParser(thinkOpen, thinkClose, inThink, "<|tool_call|>", null, TaggedParser.Body.JSON_LIST, idPrefix);
        }
        if (source.contains("tool▁calls▁begin")) {
            return new TaggedParser(thinkOpen, thinkClose, inThink, "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", TaggedParser.Body.DEEPSEEK, idPrefix);
        }
        return new TaggedParser(thinkOpen, thinkClose, inThink, null, null, TaggedParser.Body.HERMES, idPrefix);
    }

    /**
     * OpenAI request messages as HF templates expect them: text parts of a content array joined into one string,
     * tool-call arguments given as a JSON string parsed into an object (HF's convention, as vLLM does).
     */
    public static List<Object> messages(JsonNode messages) {
        List<Object> out = new ArrayList<>();
        for (JsonNode m : messages) {
            @SuppressWarnings("unchecked")
            Map<String, Object> message = (Map<String, Object>) ChatValues.of(m);
            JsonNode content = m.get("content");
            if (content != null && content.isArray()) {
                StringBuilder text = new StringBuilder();
                for (JsonNode part : content) {
                    if (part.path("type").asText("text").equals("text")) {
                        text.append(part.path("text").asText());
                    }
                }
                message.put("content", text.toString());
            }
            Object calls = message.get("tool_calls");
            if (calls instanceof List<?> list) {
                for (Object c : list) {
                    if (c instanceof Map<?, ?> call && call.get("function") instanceof Map<?, ?> fn && fn.get("arguments") instanceof String s) {
                        try {
                            @SuppressWarnings("unchecked")
                            Map<String, Object> f = (Map<String, Object>) fn;
                            f.put("arguments", ChatValues.of(JSON.readValue(s, Object.class)));
                        } catch (IOException e) {
                            // not JSON: the template gets the string the client sent
                        }
                    }
                }
            }
            out.add(message);
        }
        return out;
    }
}
