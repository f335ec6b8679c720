package dev.lockstep.chat;

import java.util.List;

/**
 * Splits a model's streamed output into answer text, reasoning and tool calls ({@link ChatDelta}), in one pass over
 * the text pieces as they arrive: text that may be the start of a marker is held back until decided, a tool call is
 * emitted once its closing marker (or the end) has arrived and it parses. One instance per reply; not thread-safe.
 */
public interface OutputParser {
    /** The deltas that {@code text} (the next piece of output) completes; may be empty. */
    List<ChatDelta> push(String text);

    /** The deltas the end of output completes: held-back text, a tool call closed by the end. */
    List<ChatDelta> finish();
}
