package dev.lockstep.cli;

import dev.lockstep.engine.EngineOptions;
import picocli.CommandLine.Option;

import java.util.Locale;

/** Options of commands that run sessions: the KV memory tiers. */
final class KvOptions {
    @Option(names = "--kv-memory", paramLabel = "SIZE", description = {
            "HBM tier of KV memory: the page pool every session draws from (e.g. 512m, 2g; default 1g).",
            "Taken as pages are first used; a call that needs a page when none is left fails alone."})
    String kvMemory;

    @Option(names = "--kv-disk", paramLabel = "SIZE", description = {
            "DISK tier: a spill file (in java.io.tmpdir, deleted at exit) where the prefix cache moves cold KV pages",
            "when the pool runs dry, instead of dropping them (default: none)."})
    String kvDisk;

    EngineOptions apply(EngineOptions options) {
        if (kvMemory != null) {
            options = options.withKvCacheBytes(parse("--kv-memory", kvMemory));
        }
        if (kvDisk != null) {
            options = options.withKvDiskBytes(parse("--kv-disk", kvDisk));
        }
        return options;
    }

    /** Bytes of "123", "64k", "512m", "2g" (binary multiples). */
    static long parse(String option, String text) {
        String t = text.trim().toLowerCase(Locale.ROOT);
        long unit = 1;
        if (!t.isEmpty() && "kmg".indexOf(t.charAt(t.length() - 1)) >= 0) {
            unit = 1L << (10 * ("kmg".indexOf(t.charAt(t.length() - 1)) + 1));
            t = t.substring(0, t.length() - 1);
        }
        try {
            long v = Long.parseLong(t);
            if (v <= 0 || v > Long.MAX_VALUE / unit) {
                throw new NumberFormatException();
            }
            return v * unit;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(option + ": '" + text + "' is not a size (a positive number of bytes, or with k, m or g)");
        }
    }
}
