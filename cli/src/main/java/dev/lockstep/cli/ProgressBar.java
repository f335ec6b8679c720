package dev.lockstep.cli;

import dev.lockstep.memory.Progress;

import java.io.PrintWriter;
import java.util.Locale;

/**
 * A one-line progress bar on stderr, redrawn in place with '\r' at most ten times a second, shown only once the
 * operation has run for {@code delayNanos} (a fast load prints nothing). {@link #finish} ends the line.
 */
final class ProgressBar implements Progress {
    private static final int WIDTH = 30;
    private final PrintWriter err;
    private final String label;
    private final long start = System.nanoTime();
    private final long delayNanos;
    private long lastDraw;
    private boolean drawn;

    /**
     * Drawn only on a terminal: redirected to a file or a pipe (a bench child), '\r' redraws would be noise. Asked
     * only when a bar is due: {@code System.console()} starts JLine, tens of milliseconds a short run need not pay.
     */
    private Boolean terminal;

    private boolean terminal() {
        if (terminal == null) {
            java.io.Console c = System.console();
            terminal = c != null && c.isTerminal();
        }
        return terminal;
    }

    ProgressBar(PrintWriter err, String label, long delayNanos) {
        this.err = err;
        this.label = label;
        this.delayNanos = delayNanos;
    }

    @Override
    public synchronized void update(long done, long total) {
        long now = System.nanoTime();
        if (now - start < delayNanos || (now - lastDraw < 100_000_000L && done < total) || !terminal()) {
            return;
        }
        lastDraw = now;
        drawn = true;
        double f = total <= 0 ? 1 : Math.min(1, (double) done / total);
        int filled = (int) Math.round(f * WIDTH);
        err.printf(Locale.ROOT, "\r%s [%s%s] %5.1f%% %,d/%,d MB %.1f s", label, "#".repeat(filled), " ".repeat(WIDTH - filled),
                100 * f, done >> 20, total >> 20, (now - start) / 1e9);
        err.flush();
    }

    /** Ends the bar's line (if one was drawn). */
    synchronized void finish() {
        if (drawn) {
            err.println();
            err.flush();
        }
    }
}
