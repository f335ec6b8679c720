package dev.lockstep.chat;

/**
 * A piece of an assistant reply as an OpenAI client sees it: answer text, reasoning text, or a tool call. A format that
 * streams its calls (Hermes, harmony) sends {@link ToolCallStart}, then {@link ToolCallArguments} pieces as they are
 * generated, then the complete {@link ToolCall} whose arguments are exactly the pieces concatenated; other formats
 * send only the {@link ToolCall}. A consumer that does not stream reads only {@link ToolCall}s.
 */
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

    /** A tool call begins: its index, id and function name are known, its arguments follow. */
    record ToolCallStart(int index, String id, String name) implements ChatDelta {
    }

    /** The next piece of a started call's arguments. */
    record ToolCallArguments(int index, String text) implements ChatDelta {
    }
}
