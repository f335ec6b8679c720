package dev.lockstep.engine;

import java.util.Arrays;

/**
 * Turns a stream of token ids into text pieces that never split a UTF-8 character. Byte-level BPE tokens
 * can end mid-character; decoding such a prefix yields U+FFFD, so a piece is held back until the text
 * decoded from the pending tokens no longer ends in U+FFFD. The concatenated pieces equal
 * {@code decode(all ids)} (the approach of HF's TextStreamer and TGI's incremental decoding: re-decode a
 * short window, emit the new suffix).
 */
public final class StreamingDecoder {
    private final Tokenizer tokenizer;
    private int[] ids = new int[64];
    private int count;
    /** Start of the window that is re-decoded; tokens before it are fully emitted. */
    private int prefixOffset;
    /** End of what has been emitted (in tokens, inside the window). */
    private int readOffset;
    /** decode(ids[prefixOffset, readOffset)): changes only when the offsets move. */
    private String emitted = "";

    StreamingDecoder(Tokenizer tokenizer) {
        this.tokenizer = tokenizer;
    }

    /** Adds one token; returns the text it completes (possibly empty). */
    public String push(int id) {
        if (count == ids.length) {
            ids = Arrays.copyOf(ids, count * 2);
        }
        ids[count++] = id;
        String full = tokenizer.decode(ids, prefixOffset, count);
        if (full.length() > emitted.length() && !full.endsWith("\uFFFD")) {
            String piece = full.substring(emitted.length());
            prefixOffset = readOffset;
            readOffset = count;
            emitted = tokenizer.decode(ids, prefixOffset, readOffset);
            return piece;
        }
        return "";
    }

    /** Whatever is still held back (an incomplete character at the end of generation), decoded as is. */
    public String flush() {
        String full = tokenizer.decode(ids, prefixOffset, count);
        String rest = full.length() > emitted.length() ? full.substring(emitted.length()) : "";
        prefixOffset = readOffset = count;
        emitted = "";
        return rest;
    }
}
