package dev.lockstep.chat;

import java.util.List;

/** An output parser over the text not yet decided: each piece is appended, then what it decides is drained. */
abstract class BufferedOutputParser implements OutputParser {
    /** Output received and not yet delivered as deltas. */
    protected final StringBuilder pending = new StringBuilder();

    @Override
    public List<ChatDelta> push(String text) {
        pending.append(text);
        return drain(false);
    }

    @Override
    public List<ChatDelta> finish() {
        return drain(true);
    }

    /** The deltas the pending text decides; {@code end}: no more output comes. */
    abstract List<ChatDelta> drain(boolean end);
}
