package dev.lockstep.interconnect;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.util.Optional;

/**
 * Pins the calling thread to one CPU through an FFM downcall to Linux's {@code sched_setaffinity(0, size, mask)}
 * (pid 0 = the calling thread), as the schedule executor's workers need. Where the call is missing (not Linux)
 * or refused (a container's cpuset, a seccomp policy), {@link #pinCurrentThread} says why and the caller runs
 * unpinned; nothing here throws for an environment that does not allow pinning.
 */
public final class Affinity {
    /** The mask covers CPUs [0, 1024): glibc's {@code cpu_set_t}. */
    public static final int MAX_CPUS = 1024;
    private static final long MASK_BYTES = MAX_CPUS / 8;

    private static final MethodHandle SET_AFFINITY;
    private static final MethodHandle GET_CPU;
    private static final StructLayout CALL_STATE;
    private static final VarHandle ERRNO;
    private static final String UNAVAILABLE;
    /** CPUs this process could use when the class was first used (before any thread here was pinned). */
    private static final int CPUS_AT_START = Runtime.getRuntime().availableProcessors();

    static {
        MethodHandle set = null, get = null;
        StructLayout state = null;
        VarHandle errno = null;
        String why = null;
        try {
            Linker linker = Linker.nativeLinker();
            Linker.Option capture = Linker.Option.captureCallState("errno");
            state = Linker.Option.captureStateLayout();
            errno = state.varHandle(MemoryLayout.PathElement.groupElement("errno"));
            Optional<MemorySegment> setSym = linker.defaultLookup().find("sched_setaffinity");
            Optional<MemorySegment> getSym = linker.defaultLookup().find("sched_getcpu");
            if (setSym.isEmpty() || getSym.isEmpty()) {
                why = "sched_setaffinity is not in the C library (not Linux)";
            } else {
                set = linker.downcallHandle(setSym.get(), FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                        ValueLayout.JAVA_LONG, ValueLayout.ADDRESS), capture);
                get = linker.downcallHandle(getSym.get(), FunctionDescriptor.of(ValueLayout.JAVA_INT));
            }
        } catch (RuntimeException | LinkageError e) {
            why = "native calls are not available (" + e.getMessage() + "); run with --enable-native-access";
        }
        SET_AFFINITY = set;
        GET_CPU = get;
        CALL_STATE = state;
        ERRNO = errno;
        UNAVAILABLE = why;
    }

    private Affinity() {
    }

    /**
     * The CPUs the process could use before anything was pinned. Use this, not
     * {@link Runtime#availableProcessors()}, to spread workers: the JVM answers the latter from the calling
     * thread's mask, which is a single CPU once that thread is pinned.
     */
    public static int cpusAtStart() {
        return CPUS_AT_START;
    }

    /** The outcome of a pinning request: pinned, or why not. */
    public record Result(boolean pinned, String why) {
    }

    /** Pins the calling thread to {@code cpu}; {@link Result#why()} says why not when it could not. */
    public static Result pinCurrentThread(int cpu) {
        if (cpu < 0 || cpu >= MAX_CPUS) {
            throw new IllegalArgumentException("cpu " + cpu + " outside [0, " + MAX_CPUS + ")");
        }
        return setMask(new int[]{cpu});
    }

    /** Lets the calling thread run on every CPU in [0, {@code cpus}) again. */
    public static Result unpinCurrentThread(int cpus) {
        int[] all = new int[Math.min(cpus, MAX_CPUS)];
        for (int i = 0; i < all.length; i++) {
            all[i] = i;
        }
        return setMask(all);
    }

    private static Result setMask(int[] cpus) {
        if (UNAVAILABLE != null) {
            return new Result(false, UNAVAILABLE);
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mask = arena.allocate(MASK_BYTES, 8);
            for (int cpu : cpus) {
                long word = cpu / 64;
                long bits = mask.get(ValueLayout.JAVA_LONG, word * 8);
                mask.set(ValueLayout.JAVA_LONG, word * 8, bits | (1L << (cpu % 64)));
            }
            MemorySegment state = arena.allocate(CALL_STATE);
            int rc = (int) SET_AFFINITY.invokeExact(state, 0, MASK_BYTES, mask);
            if (rc != 0) {
                int errno = (int) ERRNO.get(state, 0L);
                return new Result(false, "sched_setaffinity refused (errno " + errno + (errno == 22 ? ": no such CPU in this cpuset"
                        : errno == 1 ? ": not permitted" : "") + ")");
            }
            return new Result(true, "pinned");
        } catch (Throwable t) {
            return new Result(false, "sched_setaffinity failed: " + t);
        }
    }

    /** The CPU the calling thread runs on now, or -1 when unknown. */
    public static int currentCpu() {
        if (GET_CPU == null) {
            return -1;
        }
        try {
            return (int) GET_CPU.invokeExact();
        } catch (Throwable t) {
            return -1;
        }
    }
}
