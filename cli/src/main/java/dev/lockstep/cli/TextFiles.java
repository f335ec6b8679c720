package dev.lockstep.cli;

import dev.lockstep.memory.LockstepException;

import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CoderResult;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/** Text inputs of the CLI: strict UTF-8 with the offending byte named, a leading BOM dropped. */
final class TextFiles {
    private TextFiles() {
    }

    /** {@code bytes} as UTF-8 without a leading byte-order mark; invalid UTF-8 is an error naming the byte offset. */
    static String utf8(byte[] bytes, String source) {
        int start = bytes.length >= 3 && (bytes[0] & 0xff) == 0xEF && (bytes[1] & 0xff) == 0xBB && (bytes[2] & 0xff) == 0xBF ? 3 : 0;
        CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
                .onMalformedInput(CodingErrorAction.REPORT).onUnmappableCharacter(CodingErrorAction.REPORT);
        ByteBuffer in = ByteBuffer.wrap(bytes, start, bytes.length - start);
        CharBuffer out = CharBuffer.allocate(bytes.length);
        CoderResult r = decoder.decode(in, out, true);
        if (!r.isError()) {
            r = decoder.flush(out);
        }
        if (r.isError()) {
            int at = in.position();
            throw new LockstepException(source + ": not UTF-8 text (invalid byte 0x"
                    + String.format("%02x", bytes[at] & 0xff) + " at byte offset " + at + ")");
        }
        return out.flip().toString();
    }

    /**
     * {@code s} for quoting in a message: control, format (e.g. zero-width) and non-space whitespace characters,
     * and unassigned code points, become Java-style escapes (a backslash, {@code u}, four hex digits), so a quoted
     * token shows what is really in the file.
     */
    static String visible(String s) {
        StringBuilder b = new StringBuilder();
        s.codePoints().forEach(c -> {
            if (Character.isISOControl(c) || Character.getType(c) == Character.FORMAT || Character.isWhitespace(c) && c != ' '
                    || c == 0xFEFF || !Character.isDefined(c)) {
                b.append(String.format("\\u%04X", c));
            } else {
                b.appendCodePoint(c);
            }
        });
        return b.toString();
    }
}
