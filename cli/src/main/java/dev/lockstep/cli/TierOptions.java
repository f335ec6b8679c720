package dev.lockstep.cli;

import dev.lockstep.memory.MemoryTier;
import dev.lockstep.memory.TierPlacement;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.LoadOptions;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/** The memory tiers of the weights' placement plan: {@code --sram}, {@code --hbm}. */
final class TierOptions {
    @Option(names = "--sram", paramLabel = "SIZE", description = {
            "SRAM tier: routers and attention weights (read by every token) go here while they fit (e.g. 32m;",
            "0 = none; default: the last-level cache size)."})
    String sram;

    @Option(names = "--hbm", paramLabel = "SIZE", description = {
            "HBM tier: every other weight, and what SRAM cannot hold; a model that does not fit is refused",
            "(default: the machine's physical memory)."})
    String hbm;

    LoadOptions apply(LoadOptions options) {
        long s = sram == null ? -1 : "0".equals(sram.trim()) ? 0 : KvOptions.parse("--sram", sram);
        long h = hbm == null ? -1 : KvOptions.parse("--hbm", hbm);
        return options.withTiers(s, h);
    }

    List<String> asArguments() {
        List<String> a = new ArrayList<>();
        if (sram != null) {
            a.addAll(List.of("--sram", sram));
        }
        if (hbm != null) {
            a.addAll(List.of("--hbm", hbm));
        }
        return a;
    }

    /** The plan in a few lines: bytes per tier, and what is where and why (grouped by role and reason). */
    static void print(PrintWriter out, CausalLm model) {
        TierPlacement p = model.placement();
        out.printf(Locale.ROOT, "placement of the weights (tensor -> tier, decided at load):%n");
        for (MemoryTier t : new MemoryTier[]{MemoryTier.SRAM, MemoryTier.HBM}) {
            out.printf(Locale.ROOT, "  %-4s %,14d of %,16d bytes used%n", t, p.usedBytes(t), p.capacityBytes(t));
        }
        Map<String, long[]> groups = new java.util.LinkedHashMap<>();
        for (TierPlacement.Decision d : p.decisions()) {
            long[] g = groups.computeIfAbsent(d.tier() + " " + d.role().name().toLowerCase(Locale.ROOT) + ": " + d.why(), k -> new long[2]);
            g[0]++;
            g[1] += d.bytes();
        }
        groups.forEach((k, g) -> out.printf(Locale.ROOT, "  %-80s %5d tensors %,14d bytes%n", k, g[0], g[1]));
    }
}
