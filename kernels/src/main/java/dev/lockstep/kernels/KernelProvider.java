package dev.lockstep.kernels;

/**
 * Picks the kernel implementation once per JVM (holder idiom), and says why.
 * {@code -Dlockstep.vector.bits=0} forces the scalar reference; otherwise the Vector API kernels are used
 * when the {@code jdk.incubator.vector} module is present, and the scalar ones (with a logged reason) when not.
 */
public final class KernelProvider {
    private static final System.Logger LOG = System.getLogger(KernelProvider.class.getName());

    /** Logged once when the Vector API is absent; tests look for it. */
    public static final String MISSING_VECTOR_MODULE = "Lockstep: the Vector API (module jdk.incubator.vector) is not"
            + " available, so the scalar reference kernels run: same results, but prefill and decode are several times"
            + " slower (see BENCHMARKS.md). Start the JVM with --add-modules jdk.incubator.vector to use the SIMD kernels.";

    private KernelProvider() {
    }

    public static Kernels get() {
        return Holder.INSTANCE;
    }

    public static String reason() {
        return Holder.REASON;
    }

    private static final class Holder {
        static final Kernels INSTANCE;
        static final String REASON;

        static {
            Kernels chosen;
            String why;
            int bits = Integer.getInteger("lockstep.vector.bits", -1);
            if (bits == 0) {
                chosen = new ScalarKernels();
                why = "-Dlockstep.vector.bits=0";
            } else if (ModuleLayer.boot().findModule("jdk.incubator.vector").isEmpty()) {
                chosen = new ScalarKernels();
                why = "module jdk.incubator.vector not present (run with --add-modules jdk.incubator.vector)";
                // As Lucene's vectorization provider does: say it once, loudly, with the flag and the cost.
                LOG.log(System.Logger.Level.WARNING, MISSING_VECTOR_MODULE);
            } else {
                chosen = new PanamaKernels();
                why = "Vector API available";
            }
            INSTANCE = chosen;
            REASON = why;
            LOG.log(System.Logger.Level.DEBUG, "kernels: {0} ({1})", chosen.name(), why);
        }
    }
}
