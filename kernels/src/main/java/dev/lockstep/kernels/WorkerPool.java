package dev.lockstep.kernels;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.LockSupport;

/**
 * A fixed set of threads that split a range of independent work items into {@link #threads()} contiguous
 * chunks. Chunk {@code i} is meant for worker {@code i} (the caller is worker 0), but any chunk nobody has
 * claimed yet is taken by the caller once its own chunk is done: a descheduled worker (a busy or shared
 * machine) then costs one chunk of work, not a scheduler time slice. Which thread computes a chunk never
 * changes what is computed (kernels fix each element's operation order), so results are identical for any
 * thread count and any claiming race.
 *
 * <p>Dispatch is a volatile epoch bump; workers spin briefly (decode steps come back within microseconds),
 * then park. One dispatcher at a time: a second thread calling {@link #forRange} while one is running
 * (or a task calling it from inside) gets an {@link IllegalStateException} at once instead of corrupting
 * the running epoch; callers that share a pool serialize their dispatches (a model does, per forward).
 */
public final class WorkerPool implements AutoCloseable {
    /** Work over items {@code [start, end)}; {@code worker} in {@code [0, threads)} indexes per-thread scratch. */
    @FunctionalInterface
    public interface RangeTask {
        void run(int worker, int start, int end);
    }

    private static final long SPIN_NS = 200_000;
    private static final VarHandle PENDING;

    static {
        try {
            PENDING = MethodHandles.lookup().findVarHandle(WorkerPool.class, "pending", int.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final int threads;
    private final Thread[] workers;
    /** Per chunk: the epoch that last claimed it. A chunk runs once per epoch, by whoever claims it first. */
    private final AtomicLongArray claims;
    private final AtomicIntegerArray parked;
    private volatile long epoch;
    private volatile int pending;
    private volatile boolean shutdown;
    private volatile RangeTask task;
    private volatile int items;
    private volatile Throwable failure;
    /** The thread inside {@link #forRange}, or null. */
    private final java.util.concurrent.atomic.AtomicReference<Thread> dispatcher = new java.util.concurrent.atomic.AtomicReference<>();

    public WorkerPool(int threads) {
        this(threads, null);
    }

    /**
     * {@code threads} workers; each of the {@code threads - 1} pool threads first calls {@code onStart} with its
     * worker index (1 ..) on itself: where an executor pins its workers to CPUs (the caller, worker 0, pins itself).
     */
    public WorkerPool(int threads, java.util.function.IntConsumer onStart) {
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
        this.threads = threads;
        this.workers = new Thread[threads - 1];
        this.claims = new AtomicLongArray(threads);
        this.parked = new AtomicIntegerArray(Math.max(1, threads - 1));
        for (int i = 0; i < workers.length; i++) {
            int chunk = i + 1;
            workers[i] = Thread.ofPlatform().daemon().name("lockstep-worker-" + chunk).unstarted(() -> {
                if (onStart != null) {
                    onStart.accept(chunk);
                }
                loop(chunk);
            });
            workers[i].start();
        }
    }

    public int threads() {
        return threads;
    }

    /** Runs {@code task} over {@code [0, n)} split into {@link #threads()} contiguous chunks; returns when all are done. */
    public void forRange(int n, RangeTask task) {
        if (threads == 1 || n < 2) {
            task.run(0, 0, n);
            return;
        }
        if (shutdown) {
            throw new IllegalStateException("worker pool is closed");
        }
        Thread me = Thread.currentThread();
        Thread other = dispatcher.compareAndExchange(null, me);
        if (other != null) {
            throw new IllegalStateException(other == me
                    ? "WorkerPool.forRange called from inside one of its own tasks (not reentrant)"
                    : "WorkerPool.forRange called from thread '" + me.getName() + "' while thread '" + other.getName()
                            + "' is dispatching; serialize the callers");
        }
        try {
            dispatch(n, task);
        } finally {
            dispatcher.set(null);
        }
    }

    private void dispatch(int n, RangeTask task) {
        this.task = task;
        this.items = n;
        this.failure = null;
        this.pending = threads - 1;
        long e = epoch + 1;
        epoch = e; // volatile write publishes task/items/pending to workers that read epoch
        for (int i = 0; i < workers.length; i++) {
            if (parked.get(i) != 0) {
                LockSupport.unpark(workers[i]);
            }
        }
        Throwable mine = null;
        try {
            task.run(0, 0, chunkEnd(0, n));
            for (int chunk = 1; chunk < threads; chunk++) {
                if (claim(chunk, e)) {
                    runChunk(0, chunk, n, task);
                }
            }
        } catch (Throwable t) {
            mine = t;
        }
        while (pending != 0) {
            Thread.onSpinWait();
        }
        this.task = null;
        Throwable theirs = failure;
        if (mine != null || theirs != null) {
            Throwable t = mine != null ? mine : theirs;
            if (t instanceof RuntimeException re) {
                throw re;
            }
            if (t instanceof Error er) {
                throw er;
            }
            throw new IllegalStateException(t);
        }
    }

    /**
     * Claims {@code chunk} for epoch {@code e}. Claims only move forward: a worker that read an epoch late
     * (the dispatcher already took its chunk, finished, and started the next epoch) must not win its
     * stale epoch's chunk back from a newer claim.
     */
    private boolean claim(int chunk, long e) {
        long seen = claims.get(chunk);
        return seen < e && claims.compareAndSet(chunk, seen, e);
    }

    /** Runs one chunk (claimed by the caller) and counts it done, recording a failure instead of throwing. */
    private void runChunk(int worker, int chunk, int n, RangeTask t) {
        try {
            t.run(worker, chunkEnd(chunk - 1, n), chunkEnd(chunk, n));
        } catch (Throwable x) {
            failure = x;
        }
        PENDING.getAndAdd(this, -1);
    }

    private int chunkEnd(int chunk, int n) {
        return (int) ((long) n * (chunk + 1) / threads);
    }

    private void loop(int chunk) {
        long seen = 0;
        int slot = chunk - 1;
        while (true) {
            long spinStart = System.nanoTime();
            long e;
            while ((e = epoch) == seen && !shutdown) {
                if (System.nanoTime() - spinStart < SPIN_NS) {
                    Thread.onSpinWait();
                } else {
                    parked.set(slot, 1);
                    // Re-check after announcing: the dispatcher either sees parked=1 and unparks, or we see its epoch.
                    if (epoch == seen && !shutdown) {
                        LockSupport.park(this);
                    }
                    parked.set(slot, 0);
                    spinStart = System.nanoTime();
                }
            }
            if (shutdown) {
                return;
            }
            seen = e;
            // Read the task only after winning the claim: until this chunk is done, the dispatcher cannot
            // finish this epoch and publish another task.
            if (claim(chunk, e)) {
                runChunk(chunk, chunk, items, task);
            }
        }
    }

    @Override
    public void close() {
        shutdown = true;
        for (Thread w : workers) {
            LockSupport.unpark(w);
        }
    }
}
