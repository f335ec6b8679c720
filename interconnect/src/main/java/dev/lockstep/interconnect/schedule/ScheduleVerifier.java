package dev.lockstep.interconnect.schedule;

import java.util.ArrayDeque;
import java.util.List;

/**
 * Proves a {@link Schedule} safe before it runs, or rejects it naming the worker and op at fault:
 * <ul>
 *   <li>a SEND or RECV on a worker that is not the message's sender or receiver, or of a fragment the message
 *       does not have;</li>
 *   <li>a SEND without exactly one matching RECV (same message and fragment), or the two with different sizes;</li>
 *   <li>a ring overflow: a fragment (plus its header slot) larger than the ring;</li>
 *   <li>a COMPUTE on a worker that lacks the weights its part needs;</li>
 *   <li>a use of data before its RECV: a COMPUTE of a region before the worker has received the flows that region
 *       declares it consumes ({@link StepGraph#flow}), or, in a region-by-region graph, that region's inputs and every
 *       earlier region's messages to it; a SEND of a region's output or flow before its COMPUTE;</li>
 *   <li>a possible deadlock: the programs are run in lockstep simulation with the ring capacities and every
 *       message at its largest size (a smaller one only frees space sooner); a state where no worker can move
 *       and some have not finished is a deadlock, and a RECV whose link delivers another message first is an
 *       ordering error.</li>
 * </ul>
 */
public final class ScheduleVerifier {
    private ScheduleVerifier() {
    }

    public static void verify(Schedule s) {
        StepGraph g = s.graph();
        List<MessageSpec> messages = g.messages();
        int workers = s.workers();
        // static checks, op by op
        int maxFragments = 1;
        for (MessageSpec m : messages) {
            maxFragments = Math.max(maxFragments, s.fragments(m));
        }
        int[][] sends = new int[messages.size()][maxFragments];
        int[][] recvs = new int[messages.size()][maxFragments];
        int[][] sendVectors = new int[messages.size()][maxFragments];
        for (int w = 0; w < workers; w++) {
            int[] p = s.program(w);
            for (int op = 0; op < s.ops(w); op++) {
                int i = op * Schedule.OP_INTS;
                switch (p[i]) {
                    case Schedule.COMPUTE -> {
                        int group = p[i + 2];
                        if (p[i + 1] < 0 || p[i + 1] >= g.regions()) {
                            throw reject(s, w, op, "computes region " + p[i + 1] + ", which the step does not have");
                        }
                        if (group != StepGraph.NO_WEIGHTS && (group < 0 || group >= g.weightGroups().size() || !g.holds(w, group))) {
                            throw reject(s, w, op, "needs weights the worker does not hold");
                        }
                    }
                    case Schedule.SEND, Schedule.RECV -> {
                        boolean send = p[i] == Schedule.SEND;
                        int id = p[i + 2], f = p[i + 3], vectors = p[i + 4];
                        if (id < 0 || id >= messages.size()) {
                            throw reject(s, w, op, "names message " + id + ", which the step does not have");
                        }
                        MessageSpec m = messages.get(id);
                        if ((send ? m.from() : m.to()) != w) {
                            throw reject(s, w, op, "runs on worker " + w + " but " + m + (send ? " is sent by worker " + m.from() : " is received by worker " + m.to()));
                        }
                        if (f < 0 || f >= s.fragments(m)) {
                            throw reject(s, w, op, "names fragment " + f + " of a message cut into " + s.fragments(m));
                        }
                        if (vectors < 0 || 1 + vectors > s.links().maxMessageVectors()) {
                            throw reject(s, w, op, "overflows the link: 1 + " + vectors + " vectors; its largest message is "
                                    + s.links().maxMessageVectors() + " (capacity " + s.ringVectors() + ")");
                        }
                        if (send) {
                            sends[id][f]++;
                            sendVectors[id][f] = vectors;
                        } else {
                            recvs[id][f]++;
                        }
                    }
                    case Schedule.SYNC -> {
                    }
                    default -> throw reject(s, w, op, "is not an op");
                }
            }
        }
        for (int w = 0; w < workers; w++) {
            int[] p = s.program(w);
            for (int op = 0; op < s.ops(w); op++) {
                int i = op * Schedule.OP_INTS;
                if (p[i] == Schedule.SEND || p[i] == Schedule.RECV) {
                    int id = p[i + 2], f = p[i + 3];
                    if (sends[id][f] != 1 || recvs[id][f] != 1) {
                        throw reject(s, w, op, "has " + sends[id][f] + " SEND(s) and " + recvs[id][f]
                                + " RECV(s) of its fragment; a transfer needs exactly one of each");
                    }
                    if (p[i] == Schedule.RECV && p[i + 4] != sendVectors[id][f]) {
                        throw reject(s, w, op, "expects " + p[i + 4] + " vectors but the SEND carries " + sendVectors[id][f]);
                    }
                }
            }
        }
        simulate(s, messages);
    }

    /** Runs every program against rings of the schedule's capacity until all finish or none can move. */
    private static void simulate(Schedule s, List<MessageSpec> messages) {
        StepGraph g = s.graph();
        int workers = s.workers();
        int[] pc = new int[workers];
        @SuppressWarnings("unchecked")
        ArrayDeque<int[]>[] links = new ArrayDeque[workers * workers]; // {message, fragment, slots}
        int[] used = new int[workers * workers];
        for (int l = 0; l < links.length; l++) {
            links[l] = new ArrayDeque<>();
        }
        boolean[][] received = new boolean[workers][messages.size()];
        int[][] fragmentsReceived = new int[workers][messages.size()];
        boolean[][] computed = new boolean[workers][g.regions()];
        while (true) {
            boolean moved = false;
            boolean allDone = true;
            boolean allAtSync = true;
            for (int w = 0; w < workers; w++) {
                if (pc[w] >= s.ops(w)) {
                    allAtSync = false;
                    continue;
                }
                allDone = false;
                int[] p = s.program(w);
                int i = pc[w] * Schedule.OP_INTS;
                switch (p[i]) {
                    case Schedule.COMPUTE -> {
                        int r = p[i + 1];
                        for (MessageSpec m : messages) {
                            if (m.to() == w && neededBy(m, r) && !received[w][m.id()]) {
                                throw reject(s, w, pc[w], "uses " + m + " before its RECV");
                            }
                        }
                        computed[w][r] = true;
                        pc[w]++;
                        moved = true;
                        allAtSync = false;
                    }
                    case Schedule.SEND -> {
                        MessageSpec m = messages.get(p[i + 2]);
                        if (m.kind() != MessageSpec.Kind.INPUT && g.part(m.region(), w) != null && !computed[w][m.region()]) {
                            throw reject(s, w, pc[w], "sends the output of " + g.regionName(m.region()) + " before computing it");
                        }
                        int link = m.from() * workers + m.to();
                        int slots = 1 + p[i + 4];
                        if (used[link] + slots <= s.ringVectors()) {
                            links[link].addLast(new int[] {m.id(), p[i + 3], slots});
                            used[link] += slots;
                            pc[w]++;
                            moved = true;
                        }
                        allAtSync = false;
                    }
                    case Schedule.RECV -> {
                        MessageSpec m = messages.get(p[i + 2]);
                        int link = m.from() * workers + m.to();
                        int[] head = links[link].peekFirst();
                        if (head != null) {
                            if (head[0] != m.id() || head[1] != p[i + 3]) {
                                throw reject(s, w, pc[w], "waits for fragment " + p[i + 3] + " of " + m.name() + " but the link delivers fragment "
                                        + head[1] + " of " + messages.get(head[0]).name() + " first");
                            }
                            links[link].removeFirst();
                            used[link] -= head[2];
                            if (++fragmentsReceived[w][m.id()] == s.fragments(m)) {
                                received[w][m.id()] = true;
                            }
                            pc[w]++;
                            moved = true;
                        }
                        allAtSync = false;
                    }
                    case Schedule.SYNC -> {
                        // waits until every worker is at a SYNC of the same barrier
                    }
                    default -> throw reject(s, w, pc[w], "is not an op");
                }
            }
            if (allDone) {
                return;
            }
            if (!moved && allAtSync) {
                int barrier = -1;
                for (int w = 0; w < workers; w++) {
                    int b = s.program(w)[pc[w] * Schedule.OP_INTS + 2];
                    if (barrier >= 0 && b != barrier) {
                        throw reject(s, w, pc[w], "waits at barrier " + b + " while another worker waits at barrier " + barrier);
                    }
                    barrier = b;
                }
                for (int w = 0; w < workers; w++) {
                    pc[w]++;
                }
                moved = true;
            }
            if (!moved) {
                StringBuilder sb = new StringBuilder("possible deadlock: no worker can move;");
                for (int w = 0; w < workers; w++) {
                    sb.append(" worker ").append(w).append(pc[w] < s.ops(w) ? " blocked at op " + pc[w] + " (" + s.describe(w, pc[w]) + ")" : " finished").append(';');
                }
                for (int l = 0; l < links.length; l++) {
                    if (!links[l].isEmpty()) {
                        sb.append(" link w").append(l / workers).append("->w").append(l % workers).append(" holds ").append(used[l]).append('/').append(s.ringVectors()).append(" vectors;");
                    }
                }
                throw new ScheduleException(sb.substring(0, sb.length() - 1));
            }
        }
    }

    /**
     * Whether the receiver's part of region {@code r} needs {@code m}: a flow, only in the region that declared it
     * consumes it; an INPUT, in its region and later; an OUTPUT, in every later region (a region-by-region
     * schedule declares no finer dependency).
     */
    private static boolean neededBy(MessageSpec m, int r) {
        return switch (m.kind()) {
            case FLOW -> m.consumer() == r;
            case INPUT -> m.region() <= r;
            case OUTPUT -> m.region() < r;
        };
    }

    private static ScheduleException reject(Schedule s, int worker, int op, String why) {
        return new ScheduleException("worker " + worker + " op " + op + " (" + s.describe(worker, op) + ") " + why);
    }
}
