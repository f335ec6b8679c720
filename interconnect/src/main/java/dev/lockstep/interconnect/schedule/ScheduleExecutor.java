package dev.lockstep.interconnect.schedule;

import dev.lockstep.interconnect.Affinity;
import dev.lockstep.interconnect.VectorDescriptor;
import dev.lockstep.interconnect.Link;
import dev.lockstep.interconnect.LinkFactory;
import dev.lockstep.interconnect.LinkParameters;
import org.HdrHistogram.Histogram;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Supplier;

/**
 * Runs compiled {@link Schedule}s: worker 0 is the calling thread (the coordinator, which drives the step
 * region by region), workers {@code 1..N-1} are platform threads, optionally pinned to CPUs, that each run
 * their straight-line program every step. Workers talk only through a full mesh of {@link Link}s, one per
 * ordered pair (shared-memory {@code VectorRing}s unless a {@link LinkFactory} says otherwise); every message is a
 * header vector and its payload vectors ({@link MessageDescriptor}), claimed
 * and committed at once. A worker waits only at a RECV (and at the epoch barrier),
 * with an Agrona {@link IdleStrategy}; between steps it spins a little, then parks until the coordinator's
 * next step-start message.
 *
 * <p>Plesiosynchronous epochs: workers keep their own step counters and meet at the SYNC barrier every
 * {@code epochSteps} steps; the executor records each step's latency on the coordinator and each worker's
 * arrival lag at the barrier (its drift behind the first to arrive) in HdrHistograms.
 *
 * <p>Failure: a part that throws marks its worker's step aborted; aborted workers skip their remaining parts and
 * send empty messages, so every program still runs to its end and the rings stay in step; the coordinator then
 * throws the failure from {@link #end}. {@link #abort} does the same for a coordinator whose driver failed.
 */
public final class ScheduleExecutor implements AutoCloseable {
    private static final long PARK_AFTER_NS = 200_000;

    private final int workers;
    private final int ringVectors;
    private final int epochSteps;
    private final Arena arena = Arena.ofShared();
    private final Link[] links; // [from * workers + to]
    private final LinkParameters linkParameters;
    private final Thread[] threads;
    private final List<Schedule> schedules = new CopyOnWriteArrayList<>();
    private final AtomicIntegerArray parked;
    private final java.util.concurrent.atomic.AtomicReferenceArray<Throwable> failures;
    private final AtomicLongArray vectorsSent;
    /** Per worker (a cache line apart): the parts (COMPUTE ops) it ran, a part taken over by the coordinator not counted. */
    private final AtomicLongArray partsComputed;
    private final Histogram stepLatencyNs = new Histogram(3_600_000_000_000L, 3);
    private final Histogram[] driftNs;
    private final AtomicIntegerArray barrier = new AtomicIntegerArray(2); // [arrivals, generation]
    private final AtomicLongArray arrivalNs;
    private volatile boolean shutdown;
    /** How long the coordinator waits on one worker before it reports it stalled (and this executor broken). */
    private volatile long stallNanos = 30_000_000_000L;
    private volatile String broken; // why this executor can run no more steps, or null
    private long waitingSince; // coordinator: when its current wait began (0: not waiting)
    private final boolean pin;
    private volatile String pinning = "unpinned";
    private Thread pinnedCoordinator;

    // coordinator state (one thread)
    private final WorkerState coordinator;
    /** Region runs so far: each region call gets the next stamp, carried in its messages. */
    private long regionStamp;
    /** Per sending worker: OUTPUT messages the coordinator has not waited for (their part was taken over), in link order. */
    private final int[][] owed;
    private final int[] owedHead, owedCount;
    private long deferredReceives;
    private Schedule current;
    private long stepStartNs;
    private long steps;

    /**
     * {@code workers} workers (the caller is worker 0) over rings of {@code ringVectors} slots; workers meet every
     * {@code epochSteps} steps; {@code pin} pins worker {@code w} to CPU {@code w % cpus}; {@code idle} makes each
     * worker's waiting strategy at a RECV.
     */
    public ScheduleExecutor(int workers, int ringVectors, int epochSteps, boolean pin, Supplier<IdleStrategy> idle) {
        this(workers, LinkFactory.sharedMemory(ringVectors), epochSteps, pin, idle);
    }

    /** The same over links that {@code linkFactory} opens (its parameters must be those the schedules were compiled for). */
    public ScheduleExecutor(int workers, LinkFactory linkFactory, int epochSteps, boolean pin, Supplier<IdleStrategy> idle) {
        if (workers < 1) {
            throw new IllegalArgumentException("workers must be >= 1, got " + workers);
        }
        if (epochSteps < 1) {
            throw new IllegalArgumentException("epoch must be >= 1 step, got " + epochSteps);
        }
        this.workers = workers;
        this.linkParameters = linkFactory.parameters();
        this.ringVectors = linkParameters.capacityVectors();
        this.epochSteps = epochSteps;
        this.links = new Link[workers * workers];
        for (int from = 0; from < workers; from++) {
            for (int to = 0; to < workers; to++) {
                if (from != to) {
                    Link l = linkFactory.open(from, to, arena);
                    if (!l.parameters().equals(linkParameters)) {
                        throw new IllegalArgumentException("link " + from + "->" + to + " has " + l.parameters() + ", the factory said " + linkParameters);
                    }
                    links[from * workers + to] = l;
                }
            }
        }
        this.parked = new AtomicIntegerArray(workers);
        this.failures = new java.util.concurrent.atomic.AtomicReferenceArray<>(workers);
        this.vectorsSent = new AtomicLongArray(workers * 16); // one slot per worker, a cache line apart
        this.partsComputed = new AtomicLongArray(workers * 16);
        this.arrivalNs = new AtomicLongArray(workers);
        this.driftNs = new Histogram[workers];
        for (int w = 0; w < workers; w++) {
            driftNs[w] = new Histogram(3_600_000_000_000L, 3);
        }
        this.coordinator = new WorkerState(0, idle.get());
        this.owed = new int[workers][2 * ringVectors];
        this.owedHead = new int[workers];
        this.owedCount = new int[workers];
        this.threads = new Thread[workers - 1];
        for (int w = 1; w < workers; w++) {
            WorkerState state = new WorkerState(w, idle.get());
            int cpu = w % Affinity.cpusAtStart();
            threads[w - 1] = Thread.ofPlatform().daemon().name("lockstep-schedule-worker-" + w).unstarted(() -> {
                if (pin) {
                    pinned(Affinity.pinCurrentThread(cpu));
                }
                workerLoop(state);
            });
            threads[w - 1].start();
        }
        this.pin = pin;
    }

    /**
     * How long the coordinator waits for one worker (a message, a claim on a full link, the epoch barrier) before it
     * gives up: the step fails with a {@link ScheduleException} naming the worker and what it waited for, and this
     * executor refuses further steps (a stalled worker may still write later). Default 30 s.
     */
    public void stallTimeout(java.time.Duration timeout) {
        if (timeout.isNegative() || timeout.isZero()) {
            throw new IllegalArgumentException("stall timeout must be positive, got " + timeout);
        }
        stallNanos = timeout.toNanos();
    }

    /**
     * The coordinator's idle step in a wait for worker {@code worker} (0: the workers named by {@link #lateAtBarrier})
     * for {@code what} + {@code detail}: throws once the wait exceeds the stall timeout. Allocates nothing until then
     * (it runs in the spin loops of every step).
     */
    private void coordinatorWaits(int worker, String what, Object detail) {
        long now = System.nanoTime();
        if (waitingSince == 0) {
            waitingSince = now;
        } else if (now - waitingSince > stallNanos) {
            String who = worker > 0 ? "worker " + worker : lateAtBarrier(waitingSince);
            String why = who + " stalled: the coordinator waited " + (now - waitingSince) / 1_000_000 + " ms"
                    + " for " + what + (detail == null ? "" : detail) + " (stall timeout " + stallNanos / 1_000_000 + " ms)";
            waitingSince = 0;
            broken = why;
            throw new ScheduleException(why);
        }
    }

    /** The default waiting strategy: spin, then yield (workers may share a core), then park briefly. */
    public static IdleStrategy defaultIdle() {
        return new BackoffIdleStrategy(2_000, 2_000, 1_000, 50_000);
    }

    public int workers() {
        return workers;
    }

    public int ringVectors() {
        return ringVectors;
    }

    /** The links' capacity and largest message: a schedule must be compiled for exactly these. */
    public LinkParameters linkParameters() {
        return linkParameters;
    }

    private static final System.Logger LOG = System.getLogger("dev.lockstep.interconnect");
    private static final java.util.concurrent.atomic.AtomicBoolean PIN_REFUSAL_LOGGED = new java.util.concurrent.atomic.AtomicBoolean();

    /** Records a worker's pinning: the first refusal is what {@link #pinning()} reports, and is logged once per JVM. */
    private void pinned(Affinity.Result r) {
        synchronized (this) {
            if (!r.pinned()) {
                if (!pinning.startsWith("unpinned (")) {
                    pinning = "unpinned (" + r.why() + ")";
                }
                if (PIN_REFUSAL_LOGGED.compareAndSet(false, true)) {
                    LOG.log(System.Logger.Level.WARNING, "schedule workers run unpinned: " + r.why());
                }
            } else if (pinning.equals("unpinned")) {
                pinning = "pinned";
            }
        }
    }

    /** "pinned", "unpinned", or why pinning was refused (known once a step has run). */
    public String pinning() {
        return pinning;
    }

    // ---------------------------------------------------------------- coordinator

    /** Starts a step that runs {@code s} (verified before first use): runs the step-start region. */
    public void begin(Schedule s) {
        if (shutdown) {
            throw new IllegalStateException("schedule executor is closed");
        }
        if (broken != null) {
            throw new ScheduleException("schedule executor is broken (" + broken + "); close it and make a new one");
        }
        if (s.workers() != workers || !s.links().equals(linkParameters)) {
            throw new IllegalArgumentException(s + " does not fit this executor (" + workers + " workers, links " + linkParameters + ")");
        }
        if (current != null) {
            throw new IllegalStateException("a step is already running");
        }
        for (int w = 1; w < workers; w++) {
            if (!threads[w - 1].isAlive()) {
                throw new ScheduleException("schedule worker " + w + " has stopped; close this executor and make a new one");
            }
        }
        int id = schedules.indexOf(s);
        if (id < 0) {
            ScheduleVerifier.verify(s);
            schedules.add(s);
            id = schedules.size() - 1;
        }
        if (pin && pinnedCoordinator != Thread.currentThread()) {
            // the coordinator is whichever thread drives the steps (an engine's scheduler thread, a benchmark's)
            pinnedCoordinator = Thread.currentThread();
            pinned(Affinity.pinCurrentThread(0));
        }
        current = s;
        stepStartNs = System.nanoTime();
        coordinator.start(s, id, false);
        runOps(coordinator, StepGraph.STEP_REGION, null);
        for (int w = 1; w < workers; w++) {
            if (parked.get(w) != 0) {
                LockSupport.unpark(threads[w - 1]);
            }
        }
    }

    /** Runs the coordinator's ops of {@code region} (SENDs of its inputs, its part, RECVs of the outputs). */
    public void region(int region, RegionTask task) {
        if (current == null) {
            throw new IllegalStateException("no step is running");
        }
        int[] p = current.program(0);
        if (coordinator.pc < p.length && p[coordinator.pc + 1] < region && p[coordinator.pc] != Schedule.SYNC) {
            throw new ScheduleException("the step reached region " + region + " (" + current.graph().regionName(region) + ") with region "
                    + current.graph().regionName(p[coordinator.pc + 1]) + " not run: the driver and the compiled schedule disagree");
        }
        if (tasks != ownTasks) {
            throw new IllegalStateException("reserveRegions before a region-by-region step");
        }
        tasks[region] = task;
        coordinator.stamp = ++regionStamp;
        runOps(coordinator, region, task);
    }

    /** The region tasks the workers read: the coordinator's own array (region by region) or a step's ({@link #runStep}). */
    private RegionTask[] tasks = new RegionTask[0];
    private RegionTask[] ownTasks = tasks;

    /**
     * Runs one whole step of a schedule whose parts need no driver (a graph of flows): {@code stepTasks[r]} is region
     * {@code r}'s task on every worker, the coordinator included, which runs its own program to the end like the
     * others. The tasks are published to the workers by the step-start messages. Throws the first failure of any
     * worker's part (a {@link ScheduleException} whose cause is the part's exception).
     */
    public void runStep(Schedule s, RegionTask[] stepTasks) {
        if (stepTasks.length < s.graph().regions()) {
            throw new IllegalArgumentException(stepTasks.length + " tasks for " + s.graph().regions() + " regions");
        }
        tasks = stepTasks; // before the step-start messages, which publish it
        begin(s);
        try {
            coordinator.stamp = ++regionStamp;
            runOps(coordinator, -1, null);
            drainAllOwed();
        } finally {
            finishStep();
        }
    }

    /** Finishes the step (the epoch barrier when due); throws the first failure of any worker's part. */
    public void end() {
        if (current == null) {
            throw new IllegalStateException("no step is running");
        }
        try {
            int[] p = current.program(0);
            if (p[coordinator.pc] != Schedule.SYNC) {
                throw new ScheduleException("the step ended at coordinator op " + coordinator.pc / Schedule.OP_INTS + " ("
                        + current.describe(0, coordinator.pc / Schedule.OP_INTS) + "): the driver and the compiled schedule disagree");
            }
            runOps(coordinator, -1, null);
            drainAllOwed();
        } finally {
            finishStep();
        }
    }

    /**
     * Receives everything deferred before the step ends. A worker may lag within a step (its parts taken over) but
     * never into the next one: the next step may run another schedule whose region at the same index is another
     * task, and a late worker would give an old message to it.
     */
    private void drainAllOwed() {
        for (int w = 1; w < workers; w++) {
            drainOwed(w, true);
        }
    }

    /** Ends a step whose driver failed: runs the coordinator's remaining ops without computing, so the workers finish theirs. */
    public void abort() {
        if (current == null) {
            return;
        }
        coordinator.aborted = true;
        try {
            runOps(coordinator, -1, null);
            drainAllOwed();
        } finally {
            // the driver's own failure is the one to report; a worker's, if any, is dropped with the step
            for (int w = 0; w < workers; w++) {
                failures.set(w, null);
            }
            finishStep();
        }
    }

    private void finishStep() {
        current = null;
        steps++;
        stepLatencyNs.recordValue(Math.max(0, System.nanoTime() - stepStartNs));
        Throwable failed = null;
        int worker = -1;
        for (int w = 0; w < workers; w++) {
            Throwable t = failures.getAndSet(w, null);
            if (t != null && failed == null) {
                failed = t;
                worker = w;
            }
        }
        if (failed != null) {
            throw new ScheduleException("worker " + worker + "'s part of the step failed: " + failed, failed);
        }
    }

    /** Before a step: makes room for the regions' tasks (the coordinator's array, read by workers after a RECV). */
    public void reserveRegions(int regions) {
        if (ownTasks.length < regions) {
            ownTasks = java.util.Arrays.copyOf(ownTasks, regions);
        }
        tasks = ownTasks;
    }

    public Histogram stepLatencyNs() {
        return stepLatencyNs;
    }

    /** Worker {@code w}'s lag behind the first arrival at each epoch barrier. */
    public Histogram driftNs(int worker) {
        return driftNs[worker];
    }

    public long steps() {
        return steps;
    }

    /** OUTPUT messages the coordinator did not wait for, because it had computed their sender's part itself. */
    public long deferredReceives() {
        return deferredReceives;
    }

    /** Parts (a region's COMPUTE op) worker {@code w} has run so far: nonzero for every worker that did its share. */
    public long partsComputed(int worker) {
        return partsComputed.get(worker * 16);
    }

    /** {@link #partsComputed} of every worker. */
    public long[] partsComputedAll() {
        long[] p = new long[workers];
        for (int w = 0; w < workers; w++) {
            p[w] = partsComputed(w);
        }
        return p;
    }

    /** Vectors (headers included) all workers have sent so far. */
    public long vectorsSent() {
        long v = 0;
        for (int w = 0; w < workers; w++) {
            v += vectorsSent.get(w * 16);
        }
        return v;
    }

    // ---------------------------------------------------------------- workers

    private void workerLoop(WorkerState st) {
        Link start = links[st.worker]; // link 0 -> worker
        long lastWork = System.nanoTime();
        while (!shutdown) {
            if (start.available() == 0) {
                if (System.nanoTime() - lastWork < PARK_AFTER_NS) {
                    Thread.onSpinWait();
                } else {
                    parked.set(st.worker, 1);
                    if (start.available() == 0 && !shutdown) {
                        LockSupport.parkNanos(this, 1_000_000_000L);
                    }
                    parked.set(st.worker, 0);
                }
                continue;
            }
            MemorySegment seg = start.segment();
            long h = start.slotOffset(start.readIndex());
            int id = MessageDescriptor.schedule(seg, h);
            Schedule s = schedules.get(id);
            st.start(s, id, MessageDescriptor.aborted(seg, h));
            try {
                runOps(st, -1, null);
            } catch (Throwable t) {
                // a broken ring protocol: nothing more can run safely
                failures.set(st.worker, t);
                return;
            }
            lastWork = System.nanoTime();
        }
    }

    /** One worker's progress through its program. */
    private final class WorkerState {
        final int worker;
        final IdleStrategy idle;
        Schedule schedule;
        int[] program;
        int scheduleId;
        int pc;
        long stamp;
        boolean aborted;
        long step;
        int[] sendFloats = new int[0];
        int[] recvTotal = new int[0];

        WorkerState(int worker, IdleStrategy idle) {
            this.worker = worker;
            this.idle = idle;
        }

        void start(Schedule s, int id, boolean aborted) {
            this.schedule = s;
            this.program = s.program(worker);
            this.scheduleId = id;
            this.pc = 0;
            this.aborted = aborted;
            int messages = s.graph().messages().size();
            if (sendFloats.length < messages) {
                sendFloats = new int[messages];
                recvTotal = new int[messages];
            }
        }
    }

    /**
     * Runs {@code st}'s ops from its pc: all of them when {@code region} is -1, else while they belong to
     * {@code region} (the coordinator, driven region by region; never past the final SYNC).
     */
    private void runOps(WorkerState st, int region, RegionTask coordinatorTask) {
        int[] p = st.program;
        List<MessageSpec> messages = st.schedule.graph().messages();
        while (st.pc < p.length) {
            int op = p[st.pc], r = p[st.pc + 1];
            if (region >= 0 && (r != region || op == Schedule.SYNC)) {
                return;
            }
            // a worker reads a region's task only after the RECV that publishes it (below, or an earlier op)
            switch (op) {
                case Schedule.COMPUTE -> {
                    if (!st.aborted) {
                        try {
                            task(st, r, region, coordinatorTask).compute(st.worker, st.stamp);
                            partsComputed.lazySet(st.worker * 16, partsComputed.get(st.worker * 16) + 1);
                        } catch (Throwable t) {
                            failures.set(st.worker, t);
                            st.aborted = true;
                        }
                    }
                }
                case Schedule.SEND -> send(st, messages.get(p[st.pc + 2]), p[st.pc + 3], r, region, coordinatorTask);
                case Schedule.RECV -> recv(st, messages.get(p[st.pc + 2]), p[st.pc + 3], r, region, coordinatorTask);
                case Schedule.SYNC -> sync(st);
                default -> throw new ScheduleException("worker " + st.worker + " met op " + op);
            }
            st.pc += Schedule.OP_INTS;
        }
    }

    private RegionTask task(WorkerState st, int r, int region, RegionTask coordinatorTask) {
        return st.worker == 0 && region >= 0 ? coordinatorTask : tasks[r];
    }

    private void send(WorkerState st, MessageSpec m, int fragment, int r, int region, RegionTask coordinatorTask) {
        int perFragment = st.schedule.fragmentVectors() * VectorDescriptor.FLOATS_PER_VECTOR;
        if (fragment == 0) {
            int total = st.aborted || m.maxFloats() == 0 ? 0 : task(st, r, region, coordinatorTask).payloadFloats(m);
            if (total < 0 || total > m.maxFloats()) {
                throw new ScheduleException("worker " + st.worker + " sends " + total + " floats in " + m);
            }
            st.sendFloats[m.id()] = total;
        }
        int total = st.sendFloats[m.id()];
        int offset = fragment * perFragment;
        int floats = Math.max(0, Math.min(perFragment, total - offset));
        int vectors = VectorDescriptor.vectorsForFloats(floats);
        Link ring = links[m.from() * workers + m.to()];
        long first;
        while ((first = ring.tryClaim(MessageDescriptor.HEADER_VECTORS + vectors)) == Link.INSUFFICIENT_CAPACITY) {
            if (shutdown || (st.worker == 0 && !threads[m.to() - 1].isAlive())) {
                throw new ScheduleException("worker " + m.to() + " no longer takes " + m);
            }
            if (st.worker == 0) {
                // the receiver may be blocked sending to us what we deferred: take it, so that it can move
                drainOwed(m.to(), false);
                coordinatorWaits(m.to(), "room on its link for ", m);
            }
            st.idle.idle();
        }
        if (st.worker == 0) {
            waitingSince = 0;
        }
        st.idle.reset();
        MemorySegment seg = ring.segment();
        long h = ring.slotOffset(first);
        MessageDescriptor.writeHeader(seg, h, m.id(), fragment, floats, total, st.scheduleId, st.aborted, st.stamp);
        if (floats > 0) {
            RegionTask task = task(st, r, region, coordinatorTask);
            // payload vectors first+1 .. first+vectors, in at most two runs (the ring may wrap)
            long v0 = first + 1;
            int slot = (int) (v0 & (ringVectors - 1));
            int run = Math.min(vectors, ringVectors - slot);
            int runFloats = Math.min(floats, run * VectorDescriptor.FLOATS_PER_VECTOR);
            task.write(m, offset, seg, ring.slotOffset(v0), runFloats);
            if (runFloats < floats) {
                task.write(m, offset + runFloats, seg, ring.slotOffset(v0 + run), floats - runFloats);
            }
        }
        ring.commit();
        vectorsSent.lazySet(st.worker * 16, vectorsSent.get(st.worker * 16) + MessageDescriptor.HEADER_VECTORS + vectors);
    }

    private void recv(WorkerState st, MessageSpec m, int fragment, int r, int region, RegionTask coordinatorTask) {
        Link ring = links[m.from() * workers + m.to()];
        if (st.worker == 0) {
            drainOwed(m.from(), false); // take what has come of what was deferred on this link
            if (m.kind() == MessageSpec.Kind.OUTPUT && !st.aborted && (owedCount[m.from()] > 0 || ring.available() == 0)
                    && task(st, r, region, coordinatorTask).takenOver(m)) {
                owe(m, fragment); // behind the others owed on this link: a link delivers in order
                return;
            }
            drainOwed(m.from(), true); // this one is needed: what was deferred before it comes first
        }
        while (ring.available() == 0) {
            if (shutdown) {
                throw new ScheduleException("executor closed while worker " + st.worker + " waited for " + m);
            }
            if (st.worker == 0 && !threads[m.from() - 1].isAlive()) {
                throw new ScheduleException("worker " + m.from() + " stopped: " + failures.get(m.from()), failures.get(m.from()));
            }
            if (st.worker == 0) {
                coordinatorWaits(m.from(), "", m);
            }
            st.idle.idle();
        }
        if (st.worker == 0) {
            waitingSince = 0;
        }
        st.idle.reset();
        MemorySegment seg = ring.segment();
        long first = ring.readIndex();
        long h = ring.slotOffset(first);
        if (!MessageDescriptor.matches(seg, h, m.id(), fragment)) {
            throw new ScheduleException("worker " + st.worker + " expected fragment " + fragment + " of " + m + " but its link delivered "
                    + MessageDescriptor.describe(seg, h));
        }
        int floats = MessageDescriptor.floats(seg, h);
        int total = MessageDescriptor.total(seg, h);
        if (MessageDescriptor.aborted(seg, h)) {
            st.aborted = true;
        }
        int vectors = VectorDescriptor.vectorsForFloats(floats);
        if (st.worker != 0 && m.kind() == MessageSpec.Kind.INPUT) {
            st.stamp = MessageDescriptor.stamp(seg, h);
        }
        if (floats > 0 && !st.aborted) {
            int perFragment = st.schedule.fragmentVectors() * VectorDescriptor.FLOATS_PER_VECTOR;
            int offset = fragment * perFragment;
            long v0 = first + 1;
            int slot = (int) (v0 & (ringVectors - 1));
            int run = Math.min(vectors, ringVectors - slot);
            int runFloats = Math.min(floats, run * VectorDescriptor.FLOATS_PER_VECTOR);
            RegionTask task = task(st, r, region, coordinatorTask);
            try {
                task.read(m, offset, seg, ring.slotOffset(v0), runFloats, total);
                if (runFloats < floats) {
                    task.read(m, offset + runFloats, seg, ring.slotOffset(v0 + run), floats - runFloats, total);
                }
            } catch (Throwable t) {
                failures.set(st.worker, t);
                st.aborted = true;
            }
        }
        ring.release(MessageDescriptor.HEADER_VECTORS + vectors);
    }

    /** Records that the coordinator owes a RECV of fragment {@code fragment} of {@code m}. */
    private void owe(MessageSpec m, int fragment) {
        int from = m.from();
        int[] q = owed[from];
        int slots = q.length / 2;
        if (owedCount[from] == slots) {
            drainOwed(from, true);
        }
        int i = (owedHead[from] + owedCount[from]) % slots;
        q[2 * i] = m.id();
        q[2 * i + 1] = fragment;
        owedCount[from]++;
        deferredReceives++;
    }

    /**
     * Receives what the coordinator deferred on the link from {@code from}: every owed message when
     * {@code wait}, else those already there. Their payload is dropped (the coordinator computed it); a failure
     * they report is kept for the end of the step.
     */
    private void drainOwed(int from, boolean wait) {
        Link ring = links[from * workers];
        int[] q = owed[from];
        int slots = q.length / 2;
        while (owedCount[from] > 0) {
            if (ring.available() == 0) {
                if (!wait) {
                    return;
                }
                if (shutdown) {
                    throw new ScheduleException("executor closed while the coordinator waited for worker " + from);
                }
                if (!threads[from - 1].isAlive()) {
                    throw new ScheduleException("worker " + from + " stopped: " + failures.get(from), failures.get(from));
                }
                coordinatorWaits(from, "the outputs it owes (its parts were taken over)", null);
                coordinator.idle.idle();
                continue;
            }
            waitingSince = 0;
            coordinator.idle.reset();
            MemorySegment seg = ring.segment();
            long h = ring.slotOffset(ring.readIndex());
            int id = q[2 * owedHead[from]], fragment = q[2 * owedHead[from] + 1];
            if (!MessageDescriptor.matches(seg, h, id, fragment)) {
                throw new ScheduleException("the coordinator expected deferred fragment " + fragment + " of message " + id + " from worker "
                        + from + " but its link delivered " + MessageDescriptor.describe(seg, h));
            }
            ring.release(MessageDescriptor.fragmentVectors(MessageDescriptor.floats(seg, h)));
            owedHead[from] = (owedHead[from] + 1) % slots;
            owedCount[from]--;
        }
    }

    /** The workers that have not reached the barrier the coordinator reached at {@code since} (by their last arrival time). */
    private String lateAtBarrier(long since) {
        StringBuilder late = new StringBuilder();
        for (int w = 1; w < workers; w++) {
            if (arrivalNs.get(w) < since) {
                late.append(late.isEmpty() ? "worker " : ", ").append(w);
            }
        }
        return late.isEmpty() ? "a worker" : late.toString();
    }

    /** The epoch barrier, every {@code epochSteps} steps; records each worker's lag behind the first arrival. */
    private void sync(WorkerState st) {
        long step = st.worker == 0 ? steps : st.step;
        if (st.worker != 0) {
            st.step++;
        }
        if (workers == 1 || step % epochSteps != 0) {
            return;
        }
        if (st.worker == 0) {
            // a worker that is behind may be blocked sending what the coordinator deferred: take it all first
            for (int w = 1; w < workers; w++) {
                drainOwed(w, true);
            }
        }
        int generation = barrier.get(1);
        long now = System.nanoTime();
        arrivalNs.set(st.worker, now);
        if (barrier.incrementAndGet(0) == workers) {
            long firstNs = Long.MAX_VALUE;
            for (int w = 0; w < workers; w++) {
                firstNs = Math.min(firstNs, arrivalNs.get(w));
            }
            for (int w = 0; w < workers; w++) {
                driftNs[w].recordValue(Math.max(0, arrivalNs.get(w) - firstNs));
            }
            barrier.set(0, 0);
            barrier.incrementAndGet(1);
        } else {
            while (barrier.get(1) == generation) {
                if (shutdown) {
                    throw new ScheduleException("executor closed while worker " + st.worker + " waited at the epoch barrier");
                }
                if (st.worker == 0) {
                    coordinatorWaits(0, "the epoch barrier", null);
                }
                st.idle.idle();
            }
            if (st.worker == 0) {
                waitingSince = 0;
            }
            st.idle.reset();
        }
    }

    /** Stops the workers (a step must not be running) and frees the rings. */
    @Override
    public void close() {
        if (shutdown) {
            return;
        }
        shutdown = true;
        for (Thread t : threads) {
            LockSupport.unpark(t);
        }
        for (Thread t : threads) {
            try {
                t.join(5_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        boolean stopped = true;
        for (Thread t : threads) {
            stopped &= !t.isAlive();
        }
        if (stopped) {
            arena.close();
        }
    }
}
