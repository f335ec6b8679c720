package dev.lockstep.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;

/**
 * Each family's tool-call and reasoning format parsed from a model's output, whole and streamed in pieces split at
 * every position (a marker split across tokens must not leak into the text): the same deltas either way.
 */
class OutputParserTest {
    private static final String ARGS = "{\"city\": \"Zürich\"}";

    @Test
    void hermesToolCallsAndThinkAsQwen3WritesThem() {
        String out = "<think>\nThe user wants weather.\n</think>\n\nLet me check.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + ARGS
                + "}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>";
        Supplier<OutputParser> p = () -> new TaggedParser("<think>", "</think>", false, "<tool_call>", "</tool_call>", TaggedParser.Body.HERMES, "c");
        assertSplits(p, out, "Let me check.", "\nThe user wants weather.\n", "get_weather{\"city\":\"Zürich\"};get_time{};");
    }

    @Test
    void aPromptEndingInThinkStartsTheReplyAsReasoning() {
        ChatFormat f = ChatFormat.load(java.nio.file.Path.of("/nonexistent"), "plain");
        OutputParser p = new TaggedParser("<think>", "</think>", true, null, null, TaggedParser.Body.HERMES, "c");
        List<ChatDelta> d = new ArrayList<>(p.push("step 1</think>answer"));
        d.addAll(p.finish());
        assertEquals(List.of(new ChatDelta.Reasoning("step 1"), new ChatDelta.Content("answer")), d);
        assertEquals("plain", f.name());
    }

    @Test
    void mistralGraniteAndDeepSeekCalls() {
        assertSplits(() -> new TaggedParser(null, null, false, "[TOOL_CALLS]", null, TaggedParser.Body.JSON_LIST, "c"),
                "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": " + ARGS + "}]", "", "", "get_weather{\"city\":\"Zürich\"};");
        assertSplits(() -> new TaggedParser(null, null, false, "[TOOL_CALLS]", null, TaggedParser.Body.JSON_LIST, "c"),
                "[TOOL_CALLS]get_weather[ARGS]" + ARGS, "", "", "get_weather{\"city\":\"Zürich\"};");
        assertSplits(() -> new TaggedParser(null, null, false, "<|tool_call|>", null, TaggedParser.Body.JSON_LIST, "c"),
                "<|tool_call|>[{\"name\": \"get_weather\", \"arguments\": " + ARGS + "}]", "", "", "get_weather{\"city\":\"Zürich\"};");
        assertSplits(() -> new TaggedParser("<think>", "</think>", false, "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", TaggedParser.Body.DEEPSEEK, "c"),
                "Sure.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n" + ARGS
                        + "\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>", "Sure.", "", "get_weather{\"city\":\"Zürich\"};");
        assertSplits(() -> new TaggedParser("<think>", "</think>", false, "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", TaggedParser.Body.DEEPSEEK, "c"),
                "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>" + ARGS + "<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
                "", "", "get_weather{\"city\":\"Zürich\"};");
    }

    @Test
    void jsonListsStreamEachCallAndFallBackForArgumentsFirst() {
        Supplier<OutputParser> mistral = () -> new TaggedParser(null, null, false, "[TOOL_CALLS]", null, TaggedParser.Body.JSON_LIST, "c");
        assertSplits(mistral, "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": [1, {\"y\": \"}]\"}]}}, {\"name\": \"b\", \"arguments\": {}}]",
                "", "", "a{\"x\":[1,{\"y\":\"}]\"}]};b{};");
        assertSplits(mistral, "[TOOL_CALLS][{\"arguments\": {\"q\": 1}, \"name\": \"late\"}]", "", "", "late{\"q\":1};");
        assertSplits(mistral, "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"arguments\": {}, \"name\": \"b\"}]",
                "", "", "a{\"x\":1};b{};");
        // streamed: a start, then argument pieces, then the call
        OutputParser p = mistral.get();
        List<ChatDelta> all = new ArrayList<>();
        String out = "[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", \"days\": 3}}]";
        for (int i = 0; i < out.length(); i += 3) {
            all.addAll(p.push(out.substring(i, Math.min(out.length(), i + 3))));
        }
        all.addAll(p.finish());
        assertEquals(new ChatDelta.ToolCallStart(0, "c0", "get_weather"), all.getFirst());
        org.junit.jupiter.api.Assertions.assertTrue(all.stream().filter(d -> d instanceof ChatDelta.ToolCallArguments).count() >= 3, all.toString());
        assertEquals(new ChatDelta.ToolCall(0, "c0", "get_weather", "{\"city\": \"Zürich\", \"days\": 3}"), all.getLast());
    }

    @Test
    void harmonyChannels() {
        assertSplits(() -> new HarmonyParser("c"),
                "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
                        + ARGS, "", "Need weather.", "get_weather{\"city\":\"Zürich\"};");
        assertSplits(() -> new HarmonyParser("c"),
                "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>Hello there.", "Hello there.", "Easy.", "");
    }

    @Test
    void hermesAndHarmonyArgumentsStreamInPiecesAsTheyAreGenerated() {
        for (OutputParser p : List.of(new TaggedParser(null, null, false, "<tool_call>", "</tool_call>", TaggedParser.Body.HERMES, "c"),
                new HarmonyParser("c"))) {
            String out = p instanceof HarmonyParser
                    ? "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": {\"name\": \"Zürich\"}, \"days\": 3}"
                    : "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": {\"name\": \"Zürich\"}, \"days\": 3}}\n</tool_call>";
            List<ChatDelta> all = new ArrayList<>();
            int pieces = 0;
            for (int i = 0; i < out.length(); i += 4) {
                for (ChatDelta d : p.push(out.substring(i, Math.min(out.length(), i + 4)))) {
                    all.add(d);
                    if (d instanceof ChatDelta.ToolCallArguments) {
                        pieces++;
                    }
                }
            }
            all.addAll(p.finish());
            assertEquals(new ChatDelta.ToolCallStart(0, "c0", "get_weather"), all.getFirst(), p.getClass().getSimpleName());
            org.junit.jupiter.api.Assertions.assertTrue(pieces >= 3, p.getClass().getSimpleName() + " streamed the arguments in " + pieces + " pieces");
            assertEquals(new ChatDelta.ToolCall(0, "c0", "get_weather", "{\"city\": {\"name\": \"Zürich\"}, \"days\": 3}"), all.getLast());
        }
    }

    @Test
    void aCallThatDoesNotParseIsTheModelsText() {
        assertSplits(() -> new TaggedParser(null, null, false, "<tool_call>", "</tool_call>", TaggedParser.Body.HERMES, "c"),
                "a<tool_call>not json</tool_call>b", "a<tool_call>not json</tool_call>b", "", "");
    }

    private static void assertSplits(Supplier<OutputParser> parser, String output, String content, String reasoning, String calls) {
        for (int cut = 0; cut <= output.length(); cut++) {
            for (int step : new int[] {1, 3, output.length() + 1}) {
                OutputParser p = parser.get();
                List<ChatDelta> deltas = new ArrayList<>();
                deltas.addAll(p.push(output.substring(0, cut)));
                for (int i = cut; i < output.length(); i += step) {
                    deltas.addAll(p.push(output.substring(i, Math.min(output.length(), i + step))));
                }
                deltas.addAll(p.finish());
                StringBuilder c = new StringBuilder();
                StringBuilder r = new StringBuilder();
                StringBuilder t = new StringBuilder();
                java.util.Map<Integer, StringBuilder> streamed = new java.util.HashMap<>();
                String where = "cut " + cut + ", step " + step;
                for (ChatDelta d : deltas) {
                    switch (d) {
                        case ChatDelta.Content x -> c.append(x.text());
                        case ChatDelta.Reasoning x -> r.append(x.text());
                        case ChatDelta.ToolCallStart x -> streamed.put(x.index(), new StringBuilder());
                        case ChatDelta.ToolCallArguments x -> streamed.get(x.index()).append(x.text());
                        case ChatDelta.ToolCall x -> {
                            t.append(x.name()).append(x.arguments().replace(" ", "")).append(';');
                            if (streamed.containsKey(x.index())) {
                                assertEquals(x.arguments(), streamed.get(x.index()).toString(), "streamed pieces = the call's arguments, " + where);
                            }
                        }
                    }
                }
                assertEquals(content, c.toString(), where);
                assertEquals(reasoning, r.toString(), where);
                assertEquals(calls, t.toString(), where);
            }
        }
    }
}
