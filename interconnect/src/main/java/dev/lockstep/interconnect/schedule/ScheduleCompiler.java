package dev.lockstep.interconnect.schedule;

import java.util.List;

/**
 * Turns a {@link StepGraph} into one straight-line program per worker, link choice and order fixed:
 * for each region in program order, each worker
 * <ol>
 *   <li>SENDs the region's inputs it holds (by receiving worker, then message id),</li>
 *   <li>RECVs the inputs meant for it (by sending worker, then message id),</li>
 *   <li>COMPUTEs its part, if it has one,</li>
 *   <li>SENDs its part's outputs, then RECVs the outputs meant for it,</li>
 * </ol>
 * and every program ends with a SYNC (the epoch barrier). Messages go on the direct link between their two
 * workers (a full mesh: one ring per ordered pair), cut into fragments that fit a ring. The result still goes
 * through {@link ScheduleVerifier} before anything runs it.
 */
public final class ScheduleCompiler {
    public static final int EPOCH_BARRIER = 0;

    private ScheduleCompiler() {
    }

    /** Over shared-memory rings of {@code ringVectors} slots. */
    public static Schedule compile(StepGraph g, int ringVectors) {
        return compile(g, dev.lockstep.interconnect.LinkParameters.ring(ringVectors));
    }

    /** Over links with {@code links}' capacity and largest message (fragments are cut to fit the latter). */
    public static Schedule compile(StepGraph g, dev.lockstep.interconnect.LinkParameters links) {
        if (g.dataflow()) {
            return compileDataflow(g, links);
        }
        Schedule.ProgramBuilder[] b = new Schedule.ProgramBuilder[g.workers()];
        for (int w = 0; w < b.length; w++) {
            b[w] = new Schedule.ProgramBuilder();
        }
        // a throwaway schedule with no programs' content gives the fragment arithmetic
        Schedule shape = new Schedule(g, new int[g.workers()][], links);
        List<MessageSpec> messages = g.messages();
        for (int r = 0; r < g.regions(); r++) {
            for (int w = 0; w < g.workers(); w++) {
                transfers(shape, messages, r, w, MessageSpec.Kind.INPUT, b[w]);
                Integer part = g.part(r, w);
                if (part != null) {
                    b[w].compute(r, part);
                }
                transfers(shape, messages, r, w, MessageSpec.Kind.OUTPUT, b[w]);
            }
        }
        int last = g.regions() - 1;
        int[][] programs = new int[g.workers()][];
        for (int w = 0; w < b.length; w++) {
            programs[w] = b[w].sync(last, EPOCH_BARRIER).build();
        }
        return new Schedule(g, programs, links);
    }

    /**
     * A graph whose regions declare their dependencies ({@link StepGraph#flow}): after the step's doorbells, each
     * worker runs its parts in declaration order (a topological order of the flows, as every flow's consumer is
     * declared after its producer), each part preceded by the RECVs of exactly the flows it consumes (by sending
     * worker, then message id) and followed by the SENDs of the flows it produces (by receiving worker, then message
     * id). Nothing else orders the workers, so a worker computes its next part while others still work on earlier
     * regions: the overlap of micro-batch ping-pong. The verifier checks the result as any other schedule.
     */
    private static Schedule compileDataflow(StepGraph g, dev.lockstep.interconnect.LinkParameters links) {
        Schedule.ProgramBuilder[] b = new Schedule.ProgramBuilder[g.workers()];
        for (int w = 0; w < b.length; w++) {
            b[w] = new Schedule.ProgramBuilder();
        }
        Schedule shape = new Schedule(g, new int[g.workers()][], links);
        List<MessageSpec> messages = g.messages();
        for (MessageSpec m : messages) {
            if (m.kind() != MessageSpec.Kind.FLOW && m.region() != StepGraph.STEP_REGION) {
                throw new IllegalArgumentException("a graph of flows exchanges only flows after the step start; " + m + " is not one");
            }
        }
        for (int w = 0; w < g.workers(); w++) {
            transfers(shape, messages, StepGraph.STEP_REGION, w, MessageSpec.Kind.INPUT, b[w]);
        }
        for (int r = StepGraph.STEP_REGION + 1; r < g.regions(); r++) {
            for (int w = 0; w < g.workers(); w++) {
                Integer part = g.part(r, w);
                if (part == null) {
                    continue;
                }
                for (int peer = 0; peer < g.workers(); peer++) {
                    for (MessageSpec m : messages) {
                        if (m.kind() == MessageSpec.Kind.FLOW && m.consumer() == r && m.to() == w && m.from() == peer) {
                            emit(shape, m, b[w], false);
                        }
                    }
                }
                b[w].compute(r, part);
                for (int peer = 0; peer < g.workers(); peer++) {
                    for (MessageSpec m : messages) {
                        if (m.kind() == MessageSpec.Kind.FLOW && m.region() == r && m.from() == w && m.to() == peer) {
                            emit(shape, m, b[w], true);
                        }
                    }
                }
            }
        }
        int last = g.regions() - 1;
        int[][] programs = new int[g.workers()][];
        for (int w = 0; w < b.length; w++) {
            programs[w] = b[w].sync(last, EPOCH_BARRIER).build();
        }
        return new Schedule(g, programs, links);
    }

    /** Worker {@code w}'s SENDs then RECVs of region {@code r}'s messages of one kind, in their fixed order. */
    private static void transfers(Schedule shape, List<MessageSpec> messages, int r, int w, MessageSpec.Kind kind,
                                  Schedule.ProgramBuilder b) {
        for (int peer = 0; peer < shape.workers(); peer++) {
            for (MessageSpec m : messages) {
                if (m.region() == r && m.kind() == kind && m.from() == w && m.to() == peer) {
                    emit(shape, m, b, true);
                }
            }
        }
        for (int peer = 0; peer < shape.workers(); peer++) {
            for (MessageSpec m : messages) {
                if (m.region() == r && m.kind() == kind && m.to() == w && m.from() == peer) {
                    emit(shape, m, b, false);
                }
            }
        }
    }

    private static void emit(Schedule shape, MessageSpec m, Schedule.ProgramBuilder b, boolean send) {
        int fragments = shape.fragments(m);
        int left = m.maxPayloadVectors();
        for (int f = 0; f < fragments; f++) {
            int vectors = Math.min(left, shape.fragmentVectors());
            left -= vectors;
            if (send) {
                b.send(m.region(), m.id(), f, vectors);
            } else {
                b.recv(m.region(), m.id(), f, vectors);
            }
        }
    }
}
