package dev.lockstep.chat;

/** Text scanning shared by the template rewrites and the output parsers. */
final class Scan {
    private Scan() {
    }

    /**
     * The first index at or after {@code from} where one of {@code needles} starts outside quotes and at bracket depth
     * 0 (a closing bracket at depth 0 is found when it is a needle), or -1.
     */
    static int topLevel(String s, int from, String... needles) {
        int depth = 0;
        char quote = 0;
        for (int i = from; i < s.length(); i++) {
            char c = s.charAt(i);
            if (quote != 0) {
                if (c == quote) {
                    quote = 0;
                }
                continue;
            }
            if (depth == 0) {
                for (String n : needles) {
                    if (s.startsWith(n, i)) {
                        return i;
                    }
                }
            }
            if (c == '"' || c == '\'') {
                quote = c;
            } else if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if ((c == ')' || c == ']' || c == '}') && depth > 0) {
                depth--;
            }
        }
        return -1;
    }

    /** A marker found in a text: where, and which. */
    record Found(int at, String marker) {
    }

    /** The earliest occurrence in {@code text} of one of {@code markers} (null markers ignored), or null. */
    static Found first(StringBuilder text, String... markers) {
        Found best = null;
        for (String m : markers) {
            if (m == null) {
                continue;
            }
            int i = text.indexOf(m);
            if (i >= 0 && (best == null || i < best.at())) {
                best = new Found(i, m);
            }
        }
        return best;
    }

    /**
     * How much of {@code text} is decided when {@code found} (may be null) is the earliest marker in it: up to the
     * marker, or all of it at the end of output, or all but a tail that may still become a marker.
     */
    static int decided(StringBuilder text, Found found, boolean end, String... markers) {
        return found != null ? found.at() : end ? text.length() : text.length() - heldBack(text, markers);
    }

    /** The longest tail of {@code pending} that is a proper prefix of one of {@code markers} (null markers ignored). */
    static int heldBack(CharSequence pending, String... markers) {
        int best = 0;
        String text = pending.toString();
        for (String m : markers) {
            if (m == null) {
                continue;
            }
            for (int k = Math.min(m.length() - 1, text.length()); k > best; k--) {
                if (text.regionMatches(text.length() - k, m, 0, k)) {
                    best = k;
                    break;
                }
            }
        }
        return best;
    }
}
