package dev.lockstep.memory;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Where a model's packed weights live: the placement plan, decided tensor by tensor as the loader declares
 * them (before the first token), each tier a bounded {@link TierArena}. {@link MemoryTier#SRAM} takes the hot
 * working set every token reads whatever the routing (routers, attention projections, dense MLPs, lm_head) in
 * declaration order (layer by layer, lm_head last) while it fits; experts, embeddings and what no longer fits
 * go to {@link MemoryTier#HBM}; a tensor that does not fit there either is an error naming the
 * tier, the tensor and what is left. Which experts are hottest depends on the traffic, so experts are not
 * placed in SRAM without a routing profile (none is taken yet).
 *
 * <p>On this machine both tiers are DRAM: the plan bounds and accounts memory, it does not make SRAM faster.
 * The bits a forward produces do not depend on the plan. Thread-safe (the loader's copies run in parallel;
 * allocation is serialized here).
 */
public final class TierPlacement implements AutoCloseable {
    /** What a tensor is for, from its checkpoint name (Hugging Face naming). */
    public enum Role {
        ROUTER, ATTENTION, EXPERT, MLP, EMBEDDING, LM_HEAD, OTHER;

        /** The role of {@code tensor} (a checkpoint name, optionally followed by a space and a note). */
        public static Role of(String tensor) {
            String t = tensorName(tensor).toLowerCase(Locale.ROOT);
            if (t.contains("lm_head")) {
                return LM_HEAD;
            }
            if (t.contains("embed")) {
                return EMBEDDING;
            }
            if (t.contains(".experts.") || t.contains("shared_expert")) {
                return EXPERT;
            }
            if (t.endsWith("mlp.gate.weight") || t.contains(".router.") || t.contains("block_sparse_moe.gate.")) {
                return ROUTER;
            }
            if (t.contains("self_attn") || t.contains(".attention.")) {
                return ATTENTION;
            }
            if (t.contains(".mlp.")) {
                return MLP;
            }
            return OTHER;
        }

        /** Read by every token whatever the routing: candidates for SRAM (in declaration order). */
        public boolean hot() {
            return this == ROUTER || this == ATTENTION || this == MLP || this == LM_HEAD;
        }

        String coldReason() {
            return switch (this) {
                case EXPERT -> "read only by the tokens routed to it";
                case EMBEDDING -> "one row per token";
                default -> "not in the hot set";
            };
        }
    }

    /** One tensor's placement and why. */
    public record Decision(String tensor, long bytes, Role role, MemoryTier tier, String why) {
    }

    private final TierArena sram;
    private final TierArena hbm;
    private final List<Decision> decisions = new ArrayList<>();

    /** Tiers of {@code sramBytes} (0: no SRAM tier) and {@code hbmBytes}. */
    public TierPlacement(long sramBytes, long hbmBytes) {
        if (sramBytes < 0) {
            throw new IllegalArgumentException("SRAM tier size must be >= 0, got " + sramBytes);
        }
        this.sram = sramBytes > 0 ? new TierArena(MemoryTier.SRAM, sramBytes) : null;
        this.hbm = new TierArena(MemoryTier.HBM, hbmBytes);
    }

    /** Memory for {@code tensor}, in SRAM when it is hot and fits, else in HBM (which refuses when full). */
    public synchronized MemorySegment allocate(String purpose, long bytes, long alignmentBytes) {
        return allocate(purpose, Role.of(purpose), bytes, alignmentBytes);
    }

    /** As {@link #allocate(String, long, long)} with the role the family declared for the tensor. */
    public synchronized MemorySegment allocate(String purpose, Role role, long bytes, long alignmentBytes) {
        String tensor = tensorName(purpose);
        if (role.hot() && sram != null) {
            long charged = bytes + alignmentBytes - 1;
            if (charged <= sram.capacityBytes() - sram.usedBytes()) {
                decisions.add(new Decision(tensor, bytes, role, MemoryTier.SRAM, "hot: every token reads it"));
                return sram.allocate(purpose, bytes, alignmentBytes);
            }
            decisions.add(new Decision(tensor, bytes, role, MemoryTier.HBM, "hot, but no longer fits in SRAM"));
        } else {
            decisions.add(new Decision(tensor, bytes, role, MemoryTier.HBM, role.hot() ? "hot; no SRAM tier" : role.coldReason()));
        }
        try {
            return hbm.allocate(purpose, bytes, alignmentBytes);
        } catch (LockstepException e) {
            decisions.removeLast();
            throw new LockstepException(e.getMessage() + "; the weights need more HBM than this tier has (--hbm)", e);
        }
    }

    /**
     * Records a tensor whose bytes stay in a mapped packed-weights cache (in HBM, accounted by the mapping). Hot
     * tensors stay there too: a forward whose weights are all one kind of segment keeps the kernels' call sites
     * monomorphic, which is worth more than a tier that is DRAM either way.
     */
    public synchronized void recordMapped(String purpose, long bytes) {
        recordMapped(purpose, Role.of(purpose), bytes);
    }

    /** As {@link #recordMapped(String, long)} with the role the family declared for the tensor. */
    public synchronized void recordMapped(String purpose, Role role, long bytes) {
        String tensor = tensorName(purpose);
        decisions.add(new Decision(tensor, bytes, role, MemoryTier.HBM, (role.hot() ? "hot, " : role.coldReason() + ", ")
                + "mapped from the packed-weights cache"));
    }

    /** The checkpoint name at the start of an allocation's purpose ("NAME FORMAT ..."). */
    private static String tensorName(String purpose) {
        int space = purpose.indexOf(' ');
        return space < 0 ? purpose : purpose.substring(0, space);
    }

    /** Maps {@code file} read-only in HBM (a packed-weights cache); null when it does not fit or cannot be opened. */
    public synchronized MemorySegment mapReadOnly(Path file) {
        return hbm.mapReadOnly(file);
    }

    public synchronized List<Decision> decisions() {
        return List.copyOf(decisions);
    }

    public long capacityBytes(MemoryTier tier) {
        TierArena a = arena(tier);
        return a == null ? 0 : a.capacityBytes();
    }

    public long usedBytes(MemoryTier tier) {
        TierArena a = arena(tier);
        return a == null ? 0 : a.usedBytes();
    }

    private TierArena arena(MemoryTier tier) {
        return switch (tier) {
            case SRAM -> sram;
            case HBM -> hbm;
            case DISK -> null;
        };
    }


    /** The last-level cache of this machine (the SRAM tier's default size), or 0 when unknown. */
    public static long lastLevelCacheBytes() {
        long best = 0;
        for (int i = 0; i < 8; i++) {
            Path size = Path.of("/sys/devices/system/cpu/cpu0/cache/index" + i + "/size");
            if (!Files.exists(size)) {
                continue;
            }
            try {
                String v = Files.readString(size).strip();
                long n = digits(v);
                long bytes = v.endsWith("M") ? n << 20 : v.endsWith("K") ? n << 10 : n;
                best = Math.max(best, bytes);
            } catch (java.io.IOException | NumberFormatException e) {
                // no such level, or not Linux
            }
        }
        return best;
    }

    /**
     * Physical memory of this machine (the HBM tier's default bound), from {@code /proc/meminfo}; 0 when unknown.
     * (Not the management beans: initializing them costs tens of milliseconds of a cold start.)
     */
    public static long physicalMemoryBytes() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (line.startsWith("MemTotal:")) {
                    return digits(line) << 10;
                }
            }
        } catch (java.io.IOException | NumberFormatException e) {
            // not Linux
        }
        return 0;
    }

    /** The decimal digits of {@code s} as a number (no regex: this runs on every cold start). */
    private static long digits(String s) {
        long n = 0;
        boolean any = false;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c >= '0' && c <= '9') {
                n = n * 10 + (c - '0');
                any = true;
            }
        }
        if (!any) {
            throw new NumberFormatException("no digits in '" + s + "'");
        }
        return n;
    }

    @Override
    public void close() {
        if (sram != null) {
            sram.close();
        }
        hbm.close();
    }
}
