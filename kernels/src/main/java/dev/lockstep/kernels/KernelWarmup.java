package dev.lockstep.kernels;

import dev.lockstep.memory.KvBlockDescriptor;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;
import java.util.Optional;
import java.util.TreeSet;

/**
 * Brings every kernel body a model's forwards run to C2 before the first real token, whatever order shapes will
 * come in. The Vector API kernels are fast only as C2 code; left to the forwards alone, a body reaches C2 after a
 * few thousand calls (a decode step calls the row kernels a few dozen times: tens of seconds on a large model),
 * and until then each call runs C1 code with full profiling.
 *
 * <p>So the warm-up calls each body directly, on a few tiles of rows of the model's own matrices (one per format,
 * column count and kind of memory: the loops over columns, where the time goes, see the real trip counts, and the
 * JIT profiles the segment classes the forwards will bring; a call costs a microsecond, not a millisecond) and on a
 * block of the model's own KV pool, through every path a forward takes: one token (decode), two, three, four and more
 * (pair, prefill and remainders), a slice starting past the first tile, one to three query heads and one to five KV
 * blocks for attention, one, four and five rows for RMSNorm, short and long rows for softmax. It loops until the JIT
 * itself says every kernel method these calls reached runs C2 code ({@link JitState}), or {@code budgetNanos} have
 * passed. "Reached" is read as "compiled since the warm-up began": in a JVM that ran another model before (a test
 * JVM, an application that loads a second model), a kernel method of the other model's format may sit at tier 3 for
 * good, and this warm-up, which never calls it, must not wait its whole budget for it (it did: 30 s per load). The calls' outputs go to scratch arrays and are discarded; nothing the model holds is written, so the
 * warm-up changes no bit of any result.
 *
 * <p>What it relies on (DESIGN.md, "Steady speed"): each kernel body is its own never-inlined method (so its C2
 * code is shared by every caller and compiled from its own profile), the tiered policy's counters (a JVM run with
 * {@code -XX:-TieredCompilation} or another {@code Tier4*Threshold} still reaches C2, later), and the
 * {@code Compiler.codelist} diagnostic command (absent: the warm-up runs its minimum rounds and says the JIT's state
 * is unknown).
 */
public final class KernelWarmup {
    /**
     * @param nanos     wall time the warm-up took
     * @param rounds    rounds of calls (each round calls every body once per path)
     * @param jitVisible whether this JVM reported its code list; if not, the lists below are empty
     * @param runningC2 kernel methods the calls reached that run C2 code at the end
     * @param notYet    kernel methods the calls reached that still run C1 code (or interpreted) at the end
     * @param skipped   why no warm-up ran (this JVM has no C2 to wait for), else null
     */
    public record Report(long nanos, long rounds, boolean jitVisible, List<String> runningC2, List<String> notYet, String skipped) {
        public Report(long nanos, long rounds, boolean jitVisible, List<String> runningC2, List<String> notYet) {
            this(nanos, rounds, jitVisible, runningC2, notYet, null);
        }

        public boolean complete() {
            return jitVisible && notYet.isEmpty() && !runningC2.isEmpty();
        }

        /** One line: time, and what the JIT says. */
        public String describe() {
            if (skipped != null) {
                return "no kernel warm-up: " + skipped;
            }
            if (!jitVisible) {
                return String.format(Locale.ROOT, "kernel warm-up %.2f s (%d rounds); the JIT's code list is not available in this JVM: C2 state unknown",
                        nanos / 1e9, rounds);
            }
            return String.format(Locale.ROOT, "kernel warm-up %.2f s (%d rounds): %s", nanos / 1e9, rounds,
                    new Split(runningC2, notYet).describe());
        }
    }

    /** Rounds before the first look at the JIT: every path called often enough for C1 to have compiled it. */
    static final int MIN_ROUNDS = 400;
    /** Rounds between two looks (a code list costs a few milliseconds). */
    private static final int CHECK_EVERY = 100;

    private KernelWarmup() {
    }

    /**
     * Warms {@code kernels} on slices of the model's own matrices ({@code matrices}: one per format, column count and
     * kind of memory is taken, the one with most rows), for these row lengths (RMSNorm, residual adds, softmax,
     * SwiGLU) and attention over {@code kvBlock} (one KV block of the model's own pool, at {@code kvBlockOffset};
     * {@code headDim} floats per head). The memory kinds matter: the JIT profiles the segment classes a body sees
     * (mapped file, arena), and a body compiled on another kind traps and recompiles when the real one comes.
     * Scalar kernels need no warm-up (a report of 0 rounds). At most {@code budgetNanos}.
     */
    public static Report run(Kernels kernels, Collection<WeightMatrix> matrices, Collection<Integer> rowLengths, MemorySegment kvBlock,
                             long kvBlockOffset, int headDim, long budgetNanos) {
        long start = System.nanoTime();
        if (!(kernels instanceof PanamaKernels)) {
            return new Report(0, 0, true, List.of(), List.of());
        }
        String noC2 = c2Unavailable();
        if (noC2 != null) { // nothing to wait for: say so instead of spinning until the budget
            return new Report(0, 0, false, List.of(), List.of(), noC2);
        }
        int t = kernels.tileRows();
        java.util.Map<List<Object>, WeightMatrix> chosen = new java.util.LinkedHashMap<>();
        for (WeightMatrix m : matrices) {
            if (m.layout() != WeightLayout.TILED || m.tileRows() != t) {
                continue; // not what the vector kernels run
            }
            chosen.merge(List.of(m.format(), m.cols(), m.data().getClass()), m, (a, b) -> b.rows() > a.rows() ? b : a);
        }
        List<Runnable> calls = new ArrayList<>();
        for (WeightMatrix m : chosen.values()) {
            int cols = m.cols(), rows = Math.min(m.rows(), 5 * t + 3);
            float[] x = new float[8 * cols], out = new float[8 * rows];
            for (int tokens : new int[]{1, 2, 3, 4, 5, 7}) {
                calls.add(() -> kernels.matmul(m, x, 0, cols, tokens, out, 0, rows, 0, rows));
            }
            if (rows > t) { // a thread's slice of a matrix: from the second tile on
                calls.add(() -> kernels.matmul(m, x, 0, cols, 1, out, 0, rows, t, rows));
            }
        }
        // besides the model's row lengths, short ones: softmax over a few positions or experts (a vector loop
        // that runs zero times or once must have been seen too, or its first real call traps and recompiles)
        TreeSet<Integer> lengths = new TreeSet<>(rowLengths);
        lengths.addAll(List.of(1, 3, 17, 40, 64, 128));
        for (int n : lengths) {
            float[] a = new float[5 * n], b = new float[5 * n], o = new float[5 * n], w = new float[n];
            java.util.Arrays.fill(a, 0.5f);
            java.util.Arrays.fill(w, 1f);
            calls.add(() -> kernels.rmsNorm(a, 0, w, 1e-6f, o, 0, n));
            calls.add(() -> kernels.rmsNormRows(a, 0, n, 4, w, 1e-6f, o, 0, n, n));
            calls.add(() -> kernels.rmsNormRows(a, 0, n, 5, w, 1e-6f, o, 0, n, n));
            calls.add(() -> kernels.axpy(1f, a, 0, b, 0, n));
            calls.add(() -> kernels.siluMul(a, 0, a, 0, o, 0, n));
            calls.add(() -> kernels.softmax(o, 0, n));
        }
        if (headDim > 0 && kvBlock != null) {
            int block = KvBlockDescriptor.BLOCK_TOKENS, heads = 3;
            MemorySegment[] blocks = {kvBlock, kvBlock, kvBlock, kvBlock, kvBlock};
            long[] offsets = new long[5];
            java.util.Arrays.fill(offsets, kvBlockOffset);
            float[] q = new float[heads * headDim], scores = new float[heads * 5 * block], context = new float[heads * headDim];
            for (int nBlocks = 1; nBlocks <= 5; nBlocks++) {
                int nb = nBlocks;
                calls.add(() -> kernels.attentionScores(q, 0, heads, headDim, blocks, offsets, nb, scores, 0, 5 * block));
            }
            for (int h = 1; h <= heads; h++) {
                int nh = h;
                calls.add(() -> kernels.attentionValues(scores, 0, 5 * block, nh, block, kvBlock, kvBlockOffset, (long) headDim * Float.BYTES, context, 0, headDim));
                calls.add(() -> kernels.attentionValues(scores, 0, 5 * block, nh, 5, kvBlock, kvBlockOffset, (long) headDim * Float.BYTES, context, 0, headDim));
            }
            calls.add(() -> kernels.softmax(scores, 0, 5 * block));
        }
        long rounds = 0;
        int completeLooks = 0;
        // What the JIT had compiled before this warm-up: in a JVM that already ran other models (another format, other
        // shapes), kernel methods this model never calls may sit at tier 3 for good; only methods compiled since the
        // warm-up began are waited for (in a fresh JVM, every kernel method is).
        Optional<JitState.Snapshot> baseline = JitState.snapshot();
        Optional<JitState.Snapshot> last = Optional.empty();
        while (true) {
            for (Runnable c : calls) {
                c.run();
            }
            rounds++;
            if (rounds >= MIN_ROUNDS && rounds % CHECK_EVERY == 0) {
                last = JitState.snapshot();
                if (last.isEmpty()) {
                    break; // nothing to wait for: the minimum rounds ran
                }
                // two looks in a row with every reached method on C2: an OSR compile alone is not taken for it
                JitState.Snapshot now = last.get();
                boolean waiting = Split.of(now).notYet().stream()
                        .anyMatch(m -> baseline.isEmpty() || now.newestCompileId(m) != baseline.get().newestCompileId(m));
                completeLooks = waiting ? 0 : completeLooks + 1;
                if (completeLooks >= 2 || System.nanoTime() - start > budgetNanos) {
                    break;
                }
            }
        }
        long nanos = System.nanoTime() - start;
        if (last.isEmpty()) {
            return new Report(nanos, rounds, false, List.of(), List.of());
        }
        Split split = Split.of(last.get());
        return new Report(nanos, rounds, true, split.runningC2(), split.notYet());
    }

    /**
     * Why this JVM will never run C2 code ({@code -Xint}, {@code -XX:TieredStopAtLevel} below 4, as the launcher's
     * short-job mode sets), or null when it will.
     */
    static String c2Unavailable() {
        try {
            var hotspot = java.lang.management.ManagementFactory.getPlatformMXBean(com.sun.management.HotSpotDiagnosticMXBean.class);
            if (!Boolean.parseBoolean(hotspot.getVMOption("UseCompiler").getValue())) {
                return "this JVM interprets only (-Xint)";
            }
            if (Boolean.parseBoolean(hotspot.getVMOption("TieredCompilation").getValue())
                    && Integer.parseInt(hotspot.getVMOption("TieredStopAtLevel").getValue()) < 4) {
                return "this JVM stops at C1 (-XX:TieredStopAtLevel=" + hotspot.getVMOption("TieredStopAtLevel").getValue() + ")";
            }
        } catch (RuntimeException e) {
            return null; // no HotSpot flags to read: assume C2, and the code list will say
        }
        return null;
    }

    /** The kernel methods the JIT has compiled at all, split into those running C2 code and the rest. */
    public record Split(List<String> runningC2, List<String> notYet) {
        public static Split of(JitState.Snapshot snapshot) {
            List<String> c2 = new ArrayList<>(), notYet = new ArrayList<>();
            for (String m : JitState.kernelMethods()) {
                if (snapshot.compiled(m)) {
                    (snapshot.runsC2(m) ? c2 : notYet).add(m);
                }
            }
            return new Split(List.copyOf(c2), List.copyOf(notYet));
        }

        /** The JIT's state now, in words (or that this JVM does not tell). */
        public static String describeNow() {
            return JitState.snapshot().map(s -> of(s).describe()).orElse("the JIT's code list is not available in this JVM");
        }

        /** "N of M kernel methods run C2 code[; not yet: ...]". */
        public String describe() {
            return runningC2.size() + " of " + (runningC2.size() + notYet.size()) + " kernel methods run C2 code"
                    + (notYet.isEmpty() ? "" : "; not yet: " + shortNames(notYet));
        }
    }

    /** {@code Class.method} without package and descriptor, for messages. */
    static String shortNames(List<String> methods) {
        return String.join(", ", methods.stream().map(m -> {
            String s = m.substring(0, m.indexOf('('));
            int dot = s.lastIndexOf('.', s.lastIndexOf('.') - 1);
            return s.substring(dot + 1);
        }).toList());
    }
}
