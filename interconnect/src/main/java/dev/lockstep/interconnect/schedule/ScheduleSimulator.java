package dev.lockstep.interconnect.schedule;

import dev.lockstep.interconnect.VectorDescriptor;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Runs a compiled {@link Schedule} on paper: each worker's program in order against a clock of its own, each part
 * taking what a cost model says, each message taking its link's serialization time (its vectors, headers included, at
 * the link's rate, on the sender, one message at a time per link) plus the link's latency before its receiver may
 * take it. The step ends when the last worker does: that is the critical path. A RECV whose message has not arrived
 * when the worker reaches it is a wait, attributed to that op, so the result says where the step waits.
 *
 * <p>What it leaves out: ring capacity (the {@link ScheduleVerifier} proves the programs never block on it for good;
 * a full ring can still delay a sender) and the epoch barrier (one step in {@code epochSteps}).
 */
public final class ScheduleSimulator {
    private ScheduleSimulator() {
    }

    /** A link: {@code gbps} gigabits per second of payload and headers, {@code latencyNs} from the end of a send to the receiver. */
    public record LinkModel(double gbps, long latencyNs) {
        public LinkModel {
            if (!(gbps > 0) || latencyNs < 0) {
                throw new IllegalArgumentException("a link needs a positive rate and a latency >= 0, got " + gbps + " Gb/s, " + latencyNs + " ns");
            }
        }

        /** Nanoseconds to put {@code vectors} 320-byte vectors on the link. */
        public double serializeNanos(long vectors) {
            return vectors * VectorDescriptor.VECTOR_BYTES * 8 / gbps;
        }
    }

    /** What the parts and messages of one step cost. */
    public interface Costs {
        /** Nanoseconds worker {@code worker}'s COMPUTE op number {@code computeIndex} (its i-th part this step) of {@code region} takes. */
        double computeNanos(int worker, int computeIndex, int region);

        /** The floats message {@code m} carries this step (at most its maximum). */
        int payloadFloats(MessageSpec m);
    }

    /** One RECV that waited. */
    public record Wait(int worker, int op, String what, double nanos) {
    }

    /**
     * @param stepNanos    when the last worker finished
     * @param busyNanos    per worker: its parts' time
     * @param sendNanos    per worker: its messages' serialization time
     * @param waitNanos    per worker: time at RECVs waiting for a message
     * @param finishNanos  per worker: when it finished
     * @param linkVectors  per link {@code from * workers + to}: vectors sent, headers included
     * @param waits        every RECV that waited, longest first
     */
    public record Result(double stepNanos, double[] busyNanos, double[] sendNanos, double[] waitNanos, double[] finishNanos,
                         long[] linkVectors, List<Wait> waits) {
    }

    public static Result simulate(Schedule s, Costs costs, LinkModel link) {
        int workers = s.workers();
        List<MessageSpec> messages = s.graph().messages();
        int perFragmentFloats = s.fragmentVectors() * VectorDescriptor.FLOATS_PER_VECTOR;
        double[] clock = new double[workers], busy = new double[workers], send = new double[workers], wait = new double[workers];
        int[] pc = new int[workers], computes = new int[workers];
        double[] linkFree = new double[workers * workers];
        long[] linkVectors = new long[workers * workers];
        // arrival time per (message, fragment); NaN until sent
        double[][] arrival = new double[messages.size()][];
        int[] floats = new int[messages.size()];
        for (MessageSpec m : messages) {
            arrival[m.id()] = new double[s.fragments(m)];
            java.util.Arrays.fill(arrival[m.id()], Double.NaN);
            floats[m.id()] = m.maxFloats() == 0 ? 0 : Math.min(m.maxFloats(), Math.max(0, costs.payloadFloats(m)));
        }
        List<Wait> waits = new ArrayList<>();
        boolean moved = true;
        while (moved) {
            moved = false;
            for (int w = 0; w < workers; w++) {
                int[] p = s.program(w);
                while (pc[w] < s.ops(w)) {
                    int i = pc[w] * Schedule.OP_INTS;
                    int op = p[i];
                    if (op == Schedule.COMPUTE) {
                        double c = costs.computeNanos(w, computes[w]++, p[i + 1]);
                        clock[w] += c;
                        busy[w] += c;
                    } else if (op == Schedule.SEND) {
                        MessageSpec m = messages.get(p[i + 2]);
                        int f = p[i + 3];
                        int fragmentFloats = Math.max(0, Math.min(perFragmentFloats, floats[m.id()] - f * perFragmentFloats));
                        long vectors = MessageDescriptor.HEADER_VECTORS + VectorDescriptor.vectorsForFloats(fragmentFloats);
                        int l = m.from() * workers + m.to();
                        double start = Math.max(clock[w], linkFree[l]);
                        double end = start + link.serializeNanos(vectors);
                        send[w] += end - clock[w];
                        clock[w] = end;
                        linkFree[l] = end;
                        linkVectors[l] += vectors;
                        arrival[m.id()][f] = end + link.latencyNs();
                    } else if (op == Schedule.RECV) {
                        MessageSpec m = messages.get(p[i + 2]);
                        double at = arrival[m.id()][p[i + 3]];
                        if (Double.isNaN(at)) {
                            break; // not sent yet: another worker first
                        }
                        if (at > clock[w]) {
                            waits.add(new Wait(w, pc[w], s.describe(w, pc[w]), at - clock[w]));
                            wait[w] += at - clock[w];
                            clock[w] = at;
                        }
                    }
                    pc[w]++;
                    moved = true;
                }
            }
        }
        for (int w = 0; w < workers; w++) {
            if (pc[w] < s.ops(w)) {
                throw new ScheduleException("worker " + w + " never gets past op " + pc[w] + " (" + s.describe(w, pc[w])
                        + "): the schedule deadlocks even with unbounded links");
            }
        }
        double step = 0;
        for (double c : clock) {
            step = Math.max(step, c);
        }
        waits.sort(Comparator.comparingDouble(Wait::nanos).reversed());
        return new Result(step, busy, send, wait, clock.clone(), linkVectors, List.copyOf(waits));
    }
}
