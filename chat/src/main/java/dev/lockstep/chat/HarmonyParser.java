package dev.lockstep.chat;

import java.util.ArrayList;
import java.util.List;

/**
 * gpt-oss's harmony format: messages {@code <|channel|>NAME[ to=functions.F][ <|constrain|>json]<|message|>TEXT}
 * ended by {@code <|end|>}, {@code <|call|>} or {@code <|return|>} (the last two are end-of-sequence ids, so the
 * output simply ends), the next one opened by {@code <|start|>assistant}. The {@code analysis} channel is reasoning,
 * {@code final} the answer, a message addressed {@code to=functions.NAME} a tool call with TEXT as its arguments.
 * Text outside any message (a model that skips the header) is answer text.
 */
final class HarmonyParser extends BufferedOutputParser {
    private static final String CHANNEL = "<|channel|>";
    private static final String MESSAGE = "<|message|>";
    private static final String[] ENDS = {"<|end|>", "<|call|>", "<|return|>"};
    private static final String START = "<|start|>";

    private final String idPrefix;
    private String header; // the current message's header; null between messages
    private final StringBuilder callArguments = new StringBuilder();
    private int calls;
    private int callIndex = -1; // the call being streamed, -1 outside one

    HarmonyParser(String idPrefix) {
        this.idPrefix = idPrefix;
    }

    @Override
    public List<ChatDelta> finish() {
        List<ChatDelta> out = super.finish();
        if (header != null) {
            endMessage(out);
        }
        return out;
    }

    @Override
    List<ChatDelta> drain(boolean end) {
        List<ChatDelta> out = new ArrayList<>();
        while (true) {
            if (header == null) {
                int ch = pending.indexOf(CHANNEL);
                int msg = ch < 0 ? -1 : pending.indexOf(MESSAGE, ch);
                if (ch >= 0 && msg >= 0) {
                    String before = pending.substring(0, ch);
                    int start = before.indexOf(START);
                    String loose = start >= 0 ? before.substring(0, start) : before;
                    if (!loose.isBlank()) {
                        out.add(new ChatDelta.Content(loose));
                    }
                    header = pending.substring(ch + CHANNEL.length(), msg);
                    pending.delete(0, msg + MESSAGE.length());
                    if (isCall()) {
                        callIndex = calls++;
                        out.add(new ChatDelta.ToolCallStart(callIndex, idPrefix + callIndex, callName()));
                    }
                    continue;
                }
                if (end) {
                    String rest = pending.toString();
                    int start = rest.indexOf(START);
                    rest = start >= 0 ? rest.substring(0, start) : rest;
                    if (!rest.isBlank() && !rest.contains(CHANNEL)) {
                        out.add(new ChatDelta.Content(rest));
                    }
                    pending.setLength(0);
                }
                return out;
            }
            Scan.Found found = Scan.first(pending, ENDS);
            int emit = Scan.decided(pending, found, end, ENDS);
            if (emit > 0) {
                text(out, pending.substring(0, emit));
                pending.delete(0, emit);
            }
            if (found == null) {
                return out;
            }
            pending.delete(0, found.marker().length());
            endMessage(out);
        }
    }

    private String callName() {
        return header.substring(header.indexOf("to=functions.") + "to=functions.".length()).split("[\\s<]", 2)[0];
    }

    private boolean isCall() {
        return header.contains("to=functions.");
    }

    private void text(List<ChatDelta> out, String text) {
        if (isCall()) {
            callArguments.append(text);
            out.add(new ChatDelta.ToolCallArguments(callIndex, text));
        } else if (header.startsWith("analysis")) {
            out.add(new ChatDelta.Reasoning(text));
        } else {
            out.add(new ChatDelta.Content(text));
        }
    }

    private void endMessage(List<ChatDelta> out) {
        if (isCall()) {
            out.add(new ChatDelta.ToolCall(callIndex, idPrefix + callIndex, callName(), callArguments.toString()));
            callArguments.setLength(0);
            callIndex = -1;
        }
        header = null;
    }

}
