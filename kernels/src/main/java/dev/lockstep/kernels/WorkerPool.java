package dev.lockstep.kernels;

import java.util.concurrent.locks.LockSupport;

/**
 * A fixed set of threads that split a range of independent work items in contiguous chunks: the calling
 * thread takes chunk 0, worker {@code i} chunk {@code i}. Which thread computes an item never changes what
 * is computed (kernels fix each element's operation order), so results are identical for any thread count.
 *
 * <p>Dispatch is a volatile epoch bump; workers spin briefly (decode steps come back within microseconds),
 * then park. Not reentrant: a task must not call {@link #forRange} itself.
 */
public final class WorkerPool implements AutoCloseable {
    /** Work over items {@code [start, end)}; {@code worker} in {@code [0, threads)} indexes per-thread scratch. */
    @FunctionalInterface
    public interface RangeTask {
        void run(int worker, int start, int end);
    }

    private static final long SPIN_NS = 200_000;

    private final int threads;
    private final Thread[] workers;
    private volatile long epoch;
    private volatile int pending;
    private volatile boolean shutdown;
    private volatile RangeTask task;
    private volatile int items;
    private volatile Throwable failure;
    private final java.util.concurrent.atomic.AtomicIntegerArray parked;
    private static final java.lang.invoke.VarHandle PENDING;

    static {
        try {
            PENDING = java.lang.invoke.MethodHandles.lookup().findVarHandle(WorkerPool.class, "pending", int.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    public WorkerPool(int threads) {
        if (threads < 1) {
            throw new IllegalArgumentException("threads must be >= 1, got " + threads);
        }
        this.threads = threads;
        this.workers = new Thread[threads - 1];
        this.parked = new java.util.concurrent.atomic.AtomicIntegerArray(Math.max(1, threads - 1));
        for (int i = 0; i < workers.length; i++) {
            int chunk = i + 1;
            workers[i] = Thread.ofPlatform().daemon().name("lockstep-worker-" + chunk).unstarted(() -> loop(chunk));
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
        this.task = task;
        this.items = n;
        this.failure = null;
        this.pending = threads - 1;
        epoch++; // volatile write publishes task/items/pending to workers that read epoch
        for (int i = 0; i < workers.length; i++) {
            if (parked.get(i) != 0) {
                LockSupport.unpark(workers[i]);
            }
        }
        Throwable mine = null;
        try {
            task.run(0, 0, chunkEnd(0, n));
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
            int n = items;
            try {
                task.run(chunk, chunkEnd(chunk - 1, n), chunkEnd(chunk, n));
            } catch (Throwable t) {
                failure = t;
            }
            PENDING.getAndAdd(this, -1);
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
