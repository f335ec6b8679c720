package dev.lockstep.chat;

/** A piece of an assistant reply as an OpenAI client sees it: answer text, reasoning text, or one tool call. */
public sealed interface ChatDelta {
    /** Text of the answer ({@code content}). */
    record Content(String text) implements ChatDelta {
    }

    /** Text of the reasoning ({@code reasoning_content}): {@code <think>...</think>}, harmony's analysis channel. */
    record Reasoning(String text) implements ChatDelta {
    }

    /** One complete tool call: its index in the reply, id, function name and arguments (a JSON object's text). */
    record ToolCall(int index, String id, String name, String arguments) implements ChatDelta {
    }
}
