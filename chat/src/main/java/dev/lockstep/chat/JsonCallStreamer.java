package dev.lockstep.chat;

import java.util.ArrayList;
import java.util.List;

/**
 * Streams the calls of a JSON call list as it is generated ({@code [{"name": ..., "arguments": {...}}, ...]}, or one
 * object: Mistral's {@code [TOOL_CALLS]} body, Granite's {@code <|tool_call|>} body). Each update re-scans the body
 * (a few hundred bytes) with a tolerant scanner that tracks strings and nesting: a call whose {@code "name"} comes
 * before its {@code "arguments"} (or {@code "parameters"}) gets its {@link ChatDelta.ToolCallStart} once the name is
 * complete and the arguments have begun, then the arguments' text as it grows (a prefix of the final text, trailing
 * blanks held back), and its {@link ChatDelta.ToolCall} when its object closes, the arguments being exactly the
 * model's text of that value. Calls are streamed in order; a call written arguments-first, and every later one, are
 * left to the caller's whole parse at the end ({@link #streamed()} says how many were streamed).
 */
final class JsonCallStreamer {
    private static final com.fasterxml.jackson.databind.ObjectMapper JSON = new com.fasterxml.jackson.databind.ObjectMapper();
    private final String idPrefix;
    private final int firstIndex;
    private int streamed;         // calls completed by streaming
    private int openIndex = -1;   // the call being streamed (started, not complete)
    private String openName;
    private int sent;             // argument characters of the open call already sent
    private boolean stopped;      // a call that cannot stream was seen: the rest is the caller's

    JsonCallStreamer(String idPrefix, int firstIndex) {
        this.idPrefix = idPrefix;
        this.firstIndex = firstIndex;
    }

    /** Calls completed by streaming (indices {@code firstIndex .. firstIndex + streamed - 1}). */
    int streamed() {
        return streamed;
    }

    /** Whether a call has started and not completed (it must be completed by {@link #update} with {@code closed}). */
    boolean open() {
        return openIndex >= 0;
    }

    /** The deltas the body so far completes; {@code closed}: the body is whole (a call cut off is completed as is). */
    List<ChatDelta> update(String body, boolean closed) {
        List<ChatDelta> out = new ArrayList<>();
        if (stopped) {
            return out;
        }
        int i = skip(body, 0);
        if (i < body.length() && body.charAt(i) == '[') {
            i = skip(body, i + 1);
        } else if (i < body.length() && body.charAt(i) != '{') {
            stopped = true;
            return out;
        }
        for (int k = 0; i < body.length() && body.charAt(i) == '{'; k++) {
            Obj o = scanObject(body, i);
            if (k < streamed) { // completed before: skip it
                if (o.end < 0) {
                    return out; // cannot happen (it was complete)
                }
                i = skipSeparator(body, o.end);
                continue;
            }
            if (o.argsBeforeName) {
                stopped = true;
                return out;
            }
            if (o.name == null || o.argsStart < 0) {
                return out; // not far enough yet
            }
            int index = firstIndex + k;
            if (openIndex != index) {
                openIndex = index;
                openName = o.name;
                sent = 0;
                out.add(new ChatDelta.ToolCallStart(index, idPrefix + index, o.name));
            }
            boolean complete = o.argsEnd >= 0 && o.end >= 0;
            // a prefix of the final text: the value as far as written, blanks at its end held back
            String args = PythonMethods.rstrip(body.substring(o.argsStart, o.argsEnd >= 0 ? o.argsEnd : body.length()), null);
            if (args.length() > sent) {
                out.add(new ChatDelta.ToolCallArguments(index, args.substring(sent)));
                sent = args.length();
            }
            if (complete || closed) {
                out.add(new ChatDelta.ToolCall(index, idPrefix + index, openName, args));
                openIndex = -1;
                streamed++;
                if (!complete) {
                    return out;
                }
                i = skipSeparator(body, o.end);
                continue;
            }
            return out;
        }
        return out;
    }

    /** What the scan of one object found: name, where the arguments' value starts and ends, where the object ends. */
    private static final class Obj {
        String name;
        int argsStart = -1;
        int argsEnd = -1;
        int end = -1;
        boolean argsBeforeName;
    }

    private static Obj scanObject(String s, int at) {
        Obj o = new Obj();
        int i = skip(s, at + 1);
        while (i < s.length()) {
            char c = s.charAt(i);
            if (c == '}') {
                o.end = i + 1;
                return o;
            }
            if (c == ',') {
                i = skip(s, i + 1);
                continue;
            }
            if (c != '"') {
                return o; // not JSON we understand: stop here
            }
            int keyEnd = stringEnd(s, i);
            if (keyEnd < 0) {
                return o;
            }
            String key = s.substring(i + 1, keyEnd - 1);
            i = skip(s, keyEnd);
            if (i >= s.length() || s.charAt(i) != ':') {
                return o;
            }
            i = skip(s, i + 1);
            int valueEnd = valueEnd(s, i);
            if (key.equals("name")) {
                if (valueEnd > 0 && s.charAt(i) == '"') {
                    o.name = unescape(s.substring(i + 1, valueEnd - 1));
                }
            } else if (key.equals("arguments") || key.equals("parameters")) {
                if (o.name == null) {
                    o.argsBeforeName = true;
                }
                o.argsStart = i;
                o.argsEnd = valueEnd;
            }
            if (valueEnd < 0) {
                return o; // the value is still being written
            }
            i = skip(s, valueEnd);
        }
        return o;
    }

    /** The end (exclusive) of the JSON value at {@code i}, or -1 when it is not complete yet. */
    private static int valueEnd(String s, int i) {
        if (i >= s.length()) {
            return -1;
        }
        char c = s.charAt(i);
        if (c == '"') {
            return stringEnd(s, i);
        }
        if (c == '{' || c == '[') {
            int depth = 0;
            for (int j = i; j < s.length(); j++) {
                char d = s.charAt(j);
                if (d == '"') {
                    int e = stringEnd(s, j);
                    if (e < 0) {
                        return -1;
                    }
                    j = e - 1;
                } else if (d == '{' || d == '[') {
                    depth++;
                } else if (d == '}' || d == ']') {
                    if (--depth == 0) {
                        return j + 1;
                    }
                }
            }
            return -1;
        }
        int j = i;
        while (j < s.length() && ",}] \t\r\n".indexOf(s.charAt(j)) < 0) {
            j++;
        }
        return j < s.length() ? j : -1; // a number or literal ends only where something follows it
    }

    private static int stringEnd(String s, int i) {
        for (int j = i + 1; j < s.length(); j++) {
            char c = s.charAt(j);
            if (c == '\\') {
                j++;
            } else if (c == '"') {
                return j + 1;
            }
        }
        return -1;
    }

    private static String unescape(String raw) {
        try {
            return JSON.readValue("\"" + raw + "\"", String.class);
        } catch (Exception e) {
            return raw;
        }
    }

    private static int skip(String s, int i) {
        while (i < s.length() && Character.isWhitespace(s.charAt(i))) {
            i++;
        }
        return i;
    }

    private static int skipSeparator(String s, int i) {
        i = skip(s, i);
        if (i < s.length() && s.charAt(i) == ',') {
            i = skip(s, i + 1);
        }
        return i;
    }
}
