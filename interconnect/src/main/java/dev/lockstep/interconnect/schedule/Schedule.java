package dev.lockstep.interconnect.schedule;

import dev.lockstep.interconnect.LinkParameters;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * A compiled step: one straight-line program per worker, over one link per ordered worker pair of
 * {@link #ringVectors()} 320-byte slots each ({@link #links()}: capacity and largest message). An op is {@link #OP_INTS} ints:
 * <pre>
 *   COMPUTE  region  weightGroup  -         -        run this worker's part of the region
 *   SEND     region  message      fragment  vectors  claim 1 + vectors slots on link (me -> to), write, commit
 *   RECV     region  message      fragment  vectors  wait for that fragment on link (from -> me), read, release
 *   SYNC     region  barrier      -         -        epoch barrier (every K steps; a no-op otherwise)
 * </pre>
 * A message's payload is split into fragments of at most {@code maxMessageVectors - 1} vectors (one slot carries the
 * fragment's header), so no message is too big for a link; {@code vectors} is the fragment's upper bound, the
 * header says how many it carries this step.
 */
public final class Schedule {
    public static final int OP_INTS = 5;
    public static final int COMPUTE = 1;
    public static final int SEND = 2;
    public static final int RECV = 3;
    public static final int SYNC = 4;

    private final StepGraph graph;
    private final int[][] programs;
    private final int ringVectors;
    private final LinkParameters links;

    /** Over shared-memory rings of {@code ringVectors} slots ({@link LinkParameters#ring}). */
    public Schedule(StepGraph graph, int[][] programs, int ringVectors) {
        this(graph, programs, ringParameters(ringVectors));
    }

    public Schedule(StepGraph graph, int[][] programs, LinkParameters links) {
        if (programs.length != graph.workers()) {
            throw new IllegalArgumentException(programs.length + " programs for " + graph.workers() + " workers");
        }
        this.graph = graph;
        this.programs = programs;
        this.ringVectors = links.capacityVectors();
        this.links = links;
    }

    private static LinkParameters ringParameters(int ringVectors) {
        if (ringVectors < 2 || Integer.bitCount(ringVectors) != 1) {
            throw new IllegalArgumentException("ring capacity must be a power of two >= 2 vectors, got " + ringVectors);
        }
        return LinkParameters.ring(ringVectors);
    }

    /** The links' capacity and largest message, as compiled for. */
    public LinkParameters links() {
        return links;
    }

    public StepGraph graph() {
        return graph;
    }

    public int workers() {
        return programs.length;
    }

    public int ringVectors() {
        return ringVectors;
    }

    /** Payload vectors one fragment carries at most (the largest message less its header slot). */
    public int fragmentVectors() {
        return links.maxMessageVectors() - 1;
    }

    /** Fragments message {@code m}'s payload is cut into (at least one: the header travels even with no payload). */
    public int fragments(MessageSpec m) {
        return Math.max(1, (m.maxPayloadVectors() + fragmentVectors() - 1) / fragmentVectors());
    }

    /** Worker {@code worker}'s program, {@link #OP_INTS} ints per op (shared: do not modify). */
    public int[] program(int worker) {
        return programs[worker];
    }

    public int ops(int worker) {
        return programs[worker].length / OP_INTS;
    }

    /** Ops over all workers. */
    public int totalOps() {
        int n = 0;
        for (int[] p : programs) {
            n += p.length / OP_INTS;
        }
        return n;
    }

    /** Vectors the step moves at most, headers included. */
    public long maxVectorsPerStep() {
        long v = 0;
        for (int[] p : programs) {
            for (int i = 0; i < p.length; i += OP_INTS) {
                if (p[i] == SEND) {
                    v += 1 + p[i + 4];
                }
            }
        }
        return v;
    }

    /** Links (ordered worker pairs) that carry at least one message. */
    public int linksUsed() {
        boolean[] used = new boolean[workers() * workers()];
        int n = 0;
        for (MessageSpec m : graph.messages()) {
            int l = m.from() * workers() + m.to();
            if (!used[l]) {
                used[l] = true;
                n++;
            }
        }
        return n;
    }

    /** One op as text: "RECV moe.l0.x w0->w1 frag 0 <= 13 vectors". */
    public String describe(int worker, int op) {
        int[] p = programs[worker];
        int i = op * OP_INTS;
        String region = p[i + 1] >= 0 && p[i + 1] < graph.regions() ? graph.regionName(p[i + 1]) : "region " + p[i + 1];
        return switch (p[i]) {
            case COMPUTE -> "COMPUTE " + region + (p[i + 2] == StepGraph.NO_WEIGHTS ? "" : " [weights " + weightName(p[i + 2]) + "]");
            case SEND, RECV -> {
                String msg = p[i + 2] >= 0 && p[i + 2] < graph.messages().size()
                        ? graph.messages().get(p[i + 2]).name() + " w" + graph.messages().get(p[i + 2]).from() + "->w" + graph.messages().get(p[i + 2]).to()
                        : "message " + p[i + 2];
                yield (p[i] == SEND ? "SEND " : "RECV ") + msg + " frag " + p[i + 3] + " <= " + p[i + 4] + " vectors";
            }
            case SYNC -> "SYNC barrier " + p[i + 2];
            default -> "op " + p[i] + " (unknown)";
        };
    }

    private String weightName(int g) {
        return g >= 0 && g < graph.weightGroups().size() ? graph.weightGroups().get(g) : "group " + g;
    }

    /** The whole schedule as text, one op per line, worker by worker. */
    public String listing() {
        StringBuilder sb = new StringBuilder();
        for (int w = 0; w < workers(); w++) {
            sb.append("worker ").append(w).append(" (").append(ops(w)).append(" ops)\n");
            for (int op = 0; op < ops(w); op++) {
                sb.append("  ").append(op).append(": ").append(describe(w, op)).append('\n');
            }
        }
        return sb.toString();
    }

    /** Builds one worker's program op by op (the compiler's, and tests' for hand-written broken schedules). */
    public static final class ProgramBuilder {
        private final List<int[]> ops = new ArrayList<>();

        public ProgramBuilder compute(int region, int weightGroup) {
            ops.add(new int[] {COMPUTE, region, weightGroup, 0, 0});
            return this;
        }

        public ProgramBuilder send(int region, int message, int fragment, int vectors) {
            ops.add(new int[] {SEND, region, message, fragment, vectors});
            return this;
        }

        public ProgramBuilder recv(int region, int message, int fragment, int vectors) {
            ops.add(new int[] {RECV, region, message, fragment, vectors});
            return this;
        }

        public ProgramBuilder sync(int region, int barrier) {
            ops.add(new int[] {SYNC, region, barrier, 0, 0});
            return this;
        }

        public int[] build() {
            int[] p = new int[ops.size() * OP_INTS];
            for (int i = 0; i < ops.size(); i++) {
                System.arraycopy(ops.get(i), 0, p, i * OP_INTS, OP_INTS);
            }
            return p;
        }
    }

    @Override
    public String toString() {
        return "Schedule[" + workers() + " workers, " + totalOps() + " ops, <= " + maxVectorsPerStep() + " vectors/step, ring "
                + ringVectors + " vectors, programs " + Arrays.toString(Arrays.stream(programs).mapToInt(p -> p.length / OP_INTS).toArray()) + "]";
    }
}
