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
