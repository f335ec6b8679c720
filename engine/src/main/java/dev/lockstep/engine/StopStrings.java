package dev.lockstep.engine;

import java.util.List;

/**
 * Stop strings over streamed text, with hold-back: {@link #push} returns the text that can be shown now, keeping back
 * the longest tail that is the start of some stop string; once a stop string appears, the text before its first
 * occurrence is released and {@link #stopped()} turns true (nothing after it is ever released).
 */
final class StopStrings {
    private final List<String> stops;
    private final StringBuilder pending = new StringBuilder();
    private boolean stopped;

    StopStrings(List<String> stops) {
        this.stops = stops;
    }

    boolean stopped() {
        return stopped;
    }

    /** Adds {@code piece}; returns what may be emitted now. */
    String push(String piece) {
        if (stopped) {
            return "";
        }
        pending.append(piece);
        int first = -1;
        for (String s : stops) {
            int at = pending.indexOf(s);
            if (at >= 0 && (first < 0 || at < first)) {
                first = at;
            }
        }
        if (first >= 0) {
            stopped = true;
            String out = pending.substring(0, first);
            pending.setLength(0);
            return out;
        }
        int hold = 0;
        String p = pending.toString();
        for (String s : stops) {
            for (int k = Math.min(s.length() - 1, p.length()); k > hold; k--) {
                if (p.regionMatches(p.length() - k, s, 0, k)) {
                    hold = k;
                    break;
                }
            }
        }
        String out = pending.substring(0, pending.length() - hold);
        pending.delete(0, pending.length() - hold);
        return out;
    }

    /** At the end of the generation: the held-back text, which turned out not to start a stop string. */
    String flush() {
        String out = stopped ? "" : pending.toString();
        pending.setLength(0);
        return out;
    }
}
