package dev.lockstep.chat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.ArrayList;
import java.util.List;

/**
 * The tool-call and reasoning formats that mark a call with text markers: Hermes ({@code <tool_call>{json}</tool_call>},
 * Qwen2.5/Qwen3), Mistral ({@code [TOOL_CALLS][{json}, ...]} and {@code [TOOL_CALLS]name[ARGS]{json}}), Granite
 * ({@code <|tool_call|>[{json}, ...]}), DeepSeek-V3/V3.1 ({@code <｜tool▁calls▁begin｜>...<｜tool▁calls▁end｜>}), and
 * {@code <think>...</think>} reasoning. A call body that does not parse is answer text (what the model wrote), not an
 * error: the client sees it.
 */
final class TaggedParser extends BufferedOutputParser {
    enum Body { HERMES, JSON_LIST, DEEPSEEK }

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String DS_CALL_BEGIN = "<｜tool▁call▁begin｜>";
    private static final String DS_CALL_END = "<｜tool▁call▁end｜>";
    private static final String DS_SEP = "<｜tool▁sep｜>";

    private enum State { TEXT, REASONING, CALL }

    private final String thinkOpen;
    private final String thinkClose;
    private final String callOpen;
    private final String callClose; // null: the call runs to the end of output
    private final Body body;
    private final String idPrefix;
    private State state;
    private int calls;
    private boolean trimContent; // after </think> or a call: leading blank lines are the format's, not text

    TaggedParser(String thinkOpen, String thinkClose, boolean startsInReasoning, String callOpen, String callClose, Body body, String idPrefix) {
        this.thinkOpen = thinkOpen;
        this.thinkClose = thinkClose;
        this.callOpen = callOpen;
        this.callClose = callClose;
        this.body = body;
        this.idPrefix = idPrefix;
        this.state = startsInReasoning && thinkOpen != null ? State.REASONING : State.TEXT;
    }

    @Override
    List<ChatDelta> drain(boolean end) {
        List<ChatDelta> out = new ArrayList<>();
        while (true) {
            if (state == State.CALL) {
                int close = callClose == null ? -1 : pending.indexOf(callClose);
                if (body == Body.HERMES && streamHermes(out, close >= 0 ? close : pending.length(), close >= 0 || end)) {
                    if (close < 0 && !end) {
                        return out;
                    }
                    pending.delete(0, close < 0 ? pending.length() : close + callClose.length());
                    trimContent = true;
                    state = State.TEXT;
                    if (close < 0) {
                        return out;
                    }
                    continue;
                }
                int streamedCalls = 0;
                if (body == Body.JSON_LIST) {
                    if (listStreamer == null) {
                        listStreamer = new JsonCallStreamer(idPrefix, calls);
                    }
                    out.addAll(listStreamer.update(pending.substring(0, close >= 0 ? close : pending.length()), close >= 0 || end));
                    streamedCalls = listStreamer.streamed();
                }
                if (close < 0 && !end) {
                    return out;
                }
                listStreamer = null;
                String raw = pending.substring(0, close < 0 ? pending.length() : close);
                pending.delete(0, close < 0 ? pending.length() : close + callClose.length());
                List<ChatDelta.ToolCall> parsed;
                if (streamedCalls > 0) { // the streamed calls are out; the whole parse gives the ones that could not stream
                    calls += streamedCalls;
                    parsed = parseQuietly(raw, streamedCalls);
                } else {
                    parsed = parse(raw);
                }
                if (parsed == null) {
                    out.add(new ChatDelta.Content(callOpen + raw + (close < 0 ? "" : callClose)));
                } else {
                    out.addAll(parsed);
                    trimContent = true; // the blank lines between and after calls are the format's
                }
                state = State.TEXT;
                if (close < 0) {
                    return out;
                }
                continue;
            }
            String[] markers = state == State.REASONING ? new String[] {thinkClose} : new String[] {thinkOpen, callOpen};
            Scan.Found hit = Scan.first(pending, markers);
            int emit = Scan.decided(pending, hit, end, markers);
            if (emit > 0) {
                emitText(out, pending.substring(0, emit));
                pending.delete(0, emit);
            }
            if (hit == null) {
                return out;
            }
            String found = hit.marker();
            pending.delete(0, found.length());
            if (state == State.REASONING) {
                state = State.TEXT;
                trimContent = true;
            } else {
                state = found.equals(thinkOpen) ? State.REASONING : State.CALL;
            }
        }
    }

    private static final java.util.regex.Pattern HERMES_HEAD = java.util.regex.Pattern.compile(
            "\\A\\s*\\{\\s*\"name\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"\\s*,\\s*\"arguments\"\\s*:\\s*(?=\\{)");
    private JsonCallStreamer listStreamer; // the JSON list being streamed (Mistral, Granite)
    private int streamIndex = -1; // the Hermes call being streamed
    private String streamName;
    private int argsStart;
    private int argsSent;

    /**
     * Streams a Hermes call ({"name": ..., "arguments": {...}}) while it is generated: {@link ChatDelta.ToolCallStart}
     * once the name and the arguments' opening brace are in, then the arguments up to the last '}' so far (the outer
     * object's closing brace is the body's last '}', so everything before any '}' seen is surely arguments), and when
     * {@code closed} the rest and the complete {@link ChatDelta.ToolCall}. False when the body does not start that way
     * (yet): the caller parses it whole at the end.
     */
    private boolean streamHermes(List<ChatDelta> out, int bodyEnd, boolean closed) {
        String bodyText = pending.substring(0, bodyEnd);
        if (streamIndex < 0) {
            java.util.regex.Matcher m = HERMES_HEAD.matcher(bodyText);
            if (!m.find()) {
                return false;
            }
            try {
                streamName = JSON.readValue("\"" + m.group(1) + "\"", String.class);
            } catch (Exception e) {
                return false;
            }
            streamIndex = calls++;
            argsStart = m.end();
            argsSent = 0;
            out.add(new ChatDelta.ToolCallStart(streamIndex, idPrefix + streamIndex, streamName));
        }
        int lastBrace = bodyText.lastIndexOf('}');
        // up to (not including) the last brace: the outer object's once closed; a call cut off by the end keeps all
        String safe = lastBrace >= argsStart ? PythonMethods.rstrip(bodyText.substring(argsStart, lastBrace), null)
                : closed ? PythonMethods.rstrip(bodyText.substring(argsStart), null) : "";
        if (safe.length() > argsSent) {
            out.add(new ChatDelta.ToolCallArguments(streamIndex, safe.substring(argsSent)));
            argsSent = safe.length();
        }
        if (closed) {
            out.add(new ChatDelta.ToolCall(streamIndex, idPrefix + streamIndex, streamName, safe));
            streamIndex = -1;
        }
        return true;
    }

    private void emitText(List<ChatDelta> out, String text) {
        if (state == State.REASONING) {
            out.add(new ChatDelta.Reasoning(text));
            return;
        }
        if (trimContent) {
            text = PythonMethods.lstrip(text, null);
            if (text.isEmpty()) {
                return;
            }
            trimContent = false;
        }
        out.add(new ChatDelta.Content(text));
    }

    /** The longest suffix of the pending text that is a proper prefix of a marker: it may become one. */

    /**
     * After {@code skip} calls were streamed: the list's later calls from a whole parse (empty when it does not
     * parse: what streamed stays the answer).
     */
    private List<ChatDelta.ToolCall> parseQuietly(String raw, int skip) {
        try {
            JsonNode node = JSON.readTree(raw.strip());
            List<ChatDelta.ToolCall> out = new ArrayList<>();
            if (node.isArray()) {
                for (int i = skip; i < node.size(); i++) {
                    out.add(call(node.get(i)));
                }
            }
            return out;
        } catch (Exception e) {
            return new ArrayList<>();
        }
    }

    private List<ChatDelta.ToolCall> parse(String raw) {
        try {
            List<ChatDelta.ToolCall> out = new ArrayList<>();
            switch (body) {
                case HERMES -> out.add(call(JSON.readTree(raw.strip())));
                case JSON_LIST -> {
                    String s = raw.strip();
                    int args = s.indexOf("[ARGS]");
                    if (!s.startsWith("[") && !s.startsWith("{") && args > 0) {
                        out.add(call(s.substring(0, args).strip(), JSON.readTree(s.substring(args + "[ARGS]".length()))));
                    } else {
                        JsonNode node = JSON.readTree(s);
                        if (node.isArray()) {
                            for (JsonNode c : node) {
                                out.add(call(c));
                            }
                        } else {
                            out.add(call(node));
                        }
                    }
                }
                case DEEPSEEK -> {
                    int from = 0;
                    while (true) {
                        int b = raw.indexOf(DS_CALL_BEGIN, from);
                        if (b < 0) {
                            break;
                        }
                        int e = raw.indexOf(DS_CALL_END, b);
                        String one = raw.substring(b + DS_CALL_BEGIN.length(), e < 0 ? raw.length() : e);
                        int sep = one.indexOf(DS_SEP);
                        String left = one.substring(0, sep).strip();
                        String right = one.substring(sep + DS_SEP.length());
                        if (left.equals("function")) { // V3: function<sep>name\n```json\n{...}\n```
                            int nl = right.indexOf('\n');
                            String name = right.substring(0, nl).strip();
                            String args = right.substring(nl + 1).strip();
                            args = args.replaceFirst("^```(json)?", "").replaceFirst("```$", "").strip();
                            out.add(call(name, JSON.readTree(args)));
                        } else { // V3.1: name<sep>{...}
                            out.add(call(left, JSON.readTree(right.strip())));
                        }
                        if (e < 0) {
                            break;
                        }
                        from = e + DS_CALL_END.length();
                    }
                    if (out.isEmpty()) {
                        return null;
                    }
                }
                default -> throw new IllegalStateException();
            }
            return out;
        } catch (Exception e) {
            return null; // not a call: the text as the model wrote it
        }
    }

    private ChatDelta.ToolCall call(JsonNode node) throws Exception {
        JsonNode name = node.get("name");
        JsonNode args = node.has("arguments") ? node.get("arguments") : node.get("parameters");
        if (name == null || !name.isTextual()) {
            throw new IllegalArgumentException("no name");
        }
        return call(name.asText(), args);
    }

    private ChatDelta.ToolCall call(String name, JsonNode args) throws Exception {
        String arguments = args == null || args.isNull() ? "{}" : args.isTextual() ? args.asText() : JSON.writeValueAsString(args);
        int index = calls++;
        return new ChatDelta.ToolCall(index, idPrefix + index, name, arguments);
    }
}
