package dev.lockstep.interconnect.schedule;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * What the schedule compiler reads: one step's regions in program order, which worker computes a part of
 * each (and which weights that part needs), the transfers between workers, and which weights each worker
 * holds. Region 0 is the step start: a doorbell from the coordinator (worker 0) to every other worker, which
 * also tells it which compiled schedule the step runs.
 */
public final class StepGraph {
    public static final int NO_WEIGHTS = -1;
    public static final int STEP_REGION = 0;

    private final int workers;
    private final List<String> regions = new ArrayList<>();
    /** Per region, per worker: the weight group its part needs, NO_WEIGHTS, or null (no part). */
    private final List<Integer[]> parts = new ArrayList<>();
    private final List<MessageSpec> messages = new ArrayList<>();
    private final List<MessageSpec> messagesView = Collections.unmodifiableList(messages); // one view: executors read it every op
    private final List<String> weightGroups = new ArrayList<>();
    private final List<boolean[]> owners = new ArrayList<>();
    private boolean dataflow;

    public StepGraph(int workers) {
        if (workers < 1) {
            throw new IllegalArgumentException("a step needs at least one worker, got " + workers);
        }
        this.workers = workers;
        int step = region("step");
        for (int w = 1; w < workers; w++) {
            message("step->w" + w, step, 0, w, MessageSpec.Kind.INPUT, 0);
        }
    }

    public int workers() {
        return workers;
    }

    /** Appends a region (in program order); returns its index. */
    public int region(String name) {
        regions.add(name);
        parts.add(new Integer[workers]);
        return regions.size() - 1;
    }

    /** Worker {@code worker} computes a part of {@code region}, needing the weights of {@code weightGroup} (or NO_WEIGHTS). */
    public StepGraph part(int region, int worker, int weightGroup) {
        checkWorker(worker);
        parts.get(region)[worker] = weightGroup;
        return this;
    }

    /** Declares a transfer; returns its message id. */
    public int message(String name, int region, int from, int to, MessageSpec.Kind kind, int maxFloats) {
        if (kind == MessageSpec.Kind.FLOW) {
            throw new IllegalArgumentException("a flow names its consumer: use flow(...)");
        }
        checkWorker(from);
        checkWorker(to);
        MessageSpec m = new MessageSpec(messages.size(), name, region, from, to, kind, maxFloats);
        messages.add(m);
        return m.id();
    }

    /**
     * Declares a dependency as data: region {@code producer}'s part on worker {@code from} produces a message that
     * region {@code consumer}'s part on worker {@code to} consumes (the consumer is declared after the producer).
     * A graph with flows is compiled by dependency ({@link ScheduleCompiler}): each worker runs its parts in a
     * topological order of the flows, so a worker may compute a later region while another still works on an
     * earlier one (micro-batch ping-pong), and the verifier checks each part against the flows it consumes.
     * Returns the message id.
     */
    public int flow(String name, int producer, int from, int consumer, int to, int maxFloats) {
        checkWorker(from);
        checkWorker(to);
        if (producer <= STEP_REGION || producer >= regions.size() || consumer >= regions.size()) {
            throw new IllegalArgumentException("flow " + name + " between regions " + producer + " and " + consumer + " of " + regions.size());
        }
        if (parts.get(producer)[from] == null || parts.get(consumer)[to] == null) {
            throw new IllegalArgumentException("flow " + name + ": worker " + from + " has no part of " + regions.get(producer)
                    + " or worker " + to + " has none of " + regions.get(consumer));
        }
        MessageSpec m = new MessageSpec(messages.size(), name, producer, from, to, MessageSpec.Kind.FLOW, maxFloats, consumer);
        messages.add(m);
        dataflow = true;
        return m.id();
    }

    /** True when the graph declares its dependencies ({@link #flow}): the compiler orders regions by them. */
    public boolean dataflow() {
        return dataflow;
    }

    /** A named set of weights (an expert range of one layer, say); returns its id. */
    public int weightGroup(String name) {
        weightGroups.add(name);
        owners.add(new boolean[workers]);
        return weightGroups.size() - 1;
    }

    /** Worker {@code worker} holds the weights of {@code group}. */
    public StepGraph owns(int worker, int group) {
        checkWorker(worker);
        owners.get(group)[worker] = true;
        return this;
    }

    private void checkWorker(int worker) {
        if (worker < 0 || worker >= workers) {
            throw new IllegalArgumentException("worker " + worker + " outside [0, " + workers + ")");
        }
    }

    public int regions() {
        return regions.size();
    }

    public String regionName(int region) {
        return regions.get(region);
    }

    /** The weight group worker {@code worker}'s part of {@code region} needs, NO_WEIGHTS, or null when it has no part. */
    public Integer part(int region, int worker) {
        return parts.get(region)[worker];
    }

    public List<MessageSpec> messages() {
        return messagesView;
    }

    public List<String> weightGroups() {
        return Collections.unmodifiableList(weightGroups);
    }

    public boolean holds(int worker, int group) {
        return owners.get(group)[worker];
    }
}
