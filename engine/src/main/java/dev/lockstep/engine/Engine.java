package dev.lockstep.engine;

import com.fasterxml.jackson.databind.JsonNode;
import dev.lockstep.kernels.KernelProvider;
import dev.lockstep.kernels.KernelWarmup;
import dev.lockstep.kernels.Kernels;
import dev.lockstep.kernels.ScalarKernels;
import dev.lockstep.kernels.WorkerPool;
import dev.lockstep.memory.KvDiskStore;
import dev.lockstep.memory.KvPagePool;
import dev.lockstep.memory.LockstepException;
import dev.lockstep.memory.MemoryTier;
import dev.lockstep.memory.TierPlacement;
import dev.lockstep.moe.kv.PagedKvCache;
import dev.lockstep.moe.kv.PrefixCache;
import dev.lockstep.moe.CausalLm;
import dev.lockstep.moe.ModelConfigJson;
import dev.lockstep.moe.ModelFamilies;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.OptionalInt;

/**
 * A loaded model with its tokenizer and compute threads: the entry point for applications.
 *
 * {@snippet :
 * try (Engine engine = Engine.load(Path.of("models/kjv-qwen3moe"), EngineOptions.defaults());
 *      Session session = engine.newSession()) {
 *     int[] prompt = engine.tokenizer().encode("In the beginning");
 *     session.generate(prompt, 32, SamplingParams.GREEDY, StopCondition.EOS,
 *             (id, text) -> System.out.print(text));
 * }
 * }
 *
 * <p>Threads: an engine may be shared by any number of threads, each driving its own sessions. Each
 * {@link Session} is used by one thread at a time (a second thread entering a busy session gets an
 * {@link IllegalStateException} at once, never a corrupted sequence). Sessions meet in the engine's scheduler,
 * one thread that runs the work of every active session as one batched forward per step (continuous
 * batching); their KV pages come from one pool, full pages are shared through the prefix cache.
 * {@link #close()} waits for a running forward, then frees everything; a second close does nothing, and
 * every later call ({@link #newSession}, a session's forward, the tokenizer) fails with
 * {@link IllegalStateException}.
 */
public final class Engine implements AutoCloseable {
    private final Path modelDir;
    private final WorkerPool pool;
    private final CausalLm model;
    private final Tokenizer tokenizer;
    private final SpecialTokens special;
    private final Kernels kernels;
    private final KvPagePool kvPool;
    private final KvDiskStore kvDisk;       // null without a DISK tier
    private final PrefixCache prefixCache; // null when disabled
    private final Scheduler scheduler;
    private final KernelWarmup.Report warmup; // null when off
    private final java.util.concurrent.atomic.AtomicBoolean closed = new java.util.concurrent.atomic.AtomicBoolean();

    private Engine(Path modelDir, WorkerPool pool, CausalLm model, Tokenizer tokenizer, SpecialTokens special, Kernels kernels,
                   EngineOptions options, KernelWarmup.Report warmup) {
        this.kernels = kernels;
        this.warmup = warmup;
        this.modelDir = modelDir;
        this.pool = pool;
        this.model = model;
        this.tokenizer = tokenizer;
        this.special = special;
        long pageBytes = model.kvPageBytes();
        // The KV pool lives in HBM beside the weights: what the placement plan left of the tier bounds it.
        TierPlacement placement = model.placement();
        long hbmLeft = placement.capacityBytes(MemoryTier.HBM) - placement.usedBytes(MemoryTier.HBM);
        long kvBytes = options.kvCacheBytes() > 0 ? options.kvCacheBytes() : Math.min(DEFAULT_KV_CACHE_BYTES, hbmLeft);
        if (kvBytes > hbmLeft || kvBytes < pageBytes) {
            throw new LockstepException(String.format(java.util.Locale.ROOT,
                    "HBM tier: the KV page pool needs %,d bytes (at least one page of %,d), but the weights leave %,d of %,d bytes"
                            + " (--hbm, --kv-memory)", kvBytes, pageBytes, hbmLeft, placement.capacityBytes(MemoryTier.HBM)));
        }
        long pages = Math.max(1, kvBytes / pageBytes);
        if (pages > Integer.MAX_VALUE) {
            pages = Integer.MAX_VALUE;
        }
        this.kvPool = model.newKvPagePool(MemoryTier.HBM, (int) pages);
        try {
            this.kvDisk = options.kvDiskBytes() > 0
                    ? new KvDiskStore(Path.of(System.getProperty("java.io.tmpdir")), pageBytes, options.kvDiskBytes()) : null;
        } catch (RuntimeException | Error e) {
            kvPool.close();
            throw e;
        }
        this.prefixCache = options.prefixCache() ? new PrefixCache(kvPool, kvDisk) : null;
        this.scheduler = new Scheduler(model, options.batchTokens(), options.tokenSloNanos(), options.pinThreads() ? () -> pin(0) : null);
    }

    private static final System.Logger LOG = System.getLogger("dev.lockstep.engine");
    private static final java.util.concurrent.atomic.AtomicBoolean PIN_REFUSAL_LOGGED = new java.util.concurrent.atomic.AtomicBoolean();

    /** Pins the calling compute thread (worker {@code worker}) to a CPU; says once per JVM when pinning is refused. */
    static void pin(int worker) {
        // not Runtime.availableProcessors(): once the calling thread is pinned, the JVM reports its mask (1 CPU)
        int cpus = dev.lockstep.interconnect.Affinity.cpusAtStart();
        dev.lockstep.interconnect.Affinity.Result r = dev.lockstep.interconnect.Affinity.pinCurrentThread(worker % cpus);
        if (!r.pinned() && PIN_REFUSAL_LOGGED.compareAndSet(false, true)) {
            LOG.log(System.Logger.Level.WARNING, "compute threads run unpinned: " + r.why());
        }
    }

    /** KV memory when {@link EngineOptions#kvCacheBytes()} is 0: taken from the tier as pages are first used. */
    public static final long DEFAULT_KV_CACHE_BYTES = 1L << 30;

    /**
     * Loads the model in {@code modelDir}: config.json, safetensors, tokenizer.json. Every input is validated
     * first; a bad one is a {@link LockstepException} naming the file and what is wrong. Whatever fails
     * (an {@code Error} included), everything taken so far is released.
     */
    public static Engine load(Path modelDir, EngineOptions options) {
        ModelConfigJson config = ModelFamilies.readConfig(modelDir); // read once: vocab size, the family, eos
        Kernels kernels = options.kernels() == EngineOptions.KernelChoice.SCALAR ? new ScalarKernels() : KernelProvider.get();
        // a compiled schedule brings its own workers; the pool is then the coordinator alone
        WorkerPool pool = options.load().execution().isScheduled() ? new WorkerPool(1)
                : new WorkerPool(options.threads(), options.pinThreads() ? Engine::pin : null);
        CausalLm model = null;
        Tokenizer tokenizer = null;
        // The tokenizer (JSON validation, native library) loads on a second thread while this one loads the
        // weights: on a cold JVM each takes a few hundred milliseconds.
        java.util.concurrent.FutureTask<Tokenizer> tokenizerLoad = null;
        try {
            int vocab = config.requirePositiveInt("vocab_size");
            tokenizerLoad = new java.util.concurrent.FutureTask<>(() -> Tokenizer.load(modelDir, vocab));
            Thread.ofPlatform().daemon().name("lockstep-tokenizer-load").start(tokenizerLoad);
            model = ModelFamilies.load(config, kernels, pool, options.load());
            // while the tokenizer may still be loading on its own thread: the kernel bodies to C2 (DESIGN.md, "Steady speed")
            KernelWarmup.Report warmup = options.kernelWarmup() ? warmUp(kernels, model) : null;
            tokenizer = join(tokenizerLoad);
            return new Engine(modelDir, pool, model, tokenizer, tokenizer.specialTokens(), kernels, options, warmup);
        } catch (RuntimeException | Error e) {
            if (tokenizer == null && tokenizerLoad != null) {
                try {
                    tokenizer = join(tokenizerLoad);
                } catch (RuntimeException | Error ignored) {
                    // the first failure is the one reported
                }
            }
            if (tokenizer != null) {
                tokenizer.close();
            }
            if (model != null) {
                model.close();
            }
            pool.close();
            if (e instanceof OutOfMemoryError oom) {
                throw new LockstepException(modelDir + ": not enough memory to load the model (" + oom.getMessage()
                        + "); give the JVM more with -Xmx or -XX:MaxDirectMemorySize", oom);
            }
            throw e;
        }
    }

    /** Longest the kernel warm-up at load may take; on 2 cores it takes 1-3 s (BENCHMARKS.md, "Steady speed"). */
    static final long WARMUP_BUDGET_NANOS = 30_000_000_000L;

    /**
     * Runs the kernel warm-up for this model's matrices (format and columns of each), row lengths (every matrix's
     * columns: the hidden size and the expert/MLP width) and head size.
     */
    private static KernelWarmup.Report warmUp(Kernels kernels, CausalLm model) {
        java.util.Set<Integer> rows = new java.util.TreeSet<>();
        for (var m : model.weightMatrices()) {
            rows.add(m.cols());
        }
        // one block of a KV cache of the model's own kind: attention sees the memory it will read
        try (var kv = model.newKvCache(dev.lockstep.memory.KvBlockDescriptor.BLOCK_TOKENS)) {
            kv.reserve(1);
            return KernelWarmup.run(kernels, model.weightMatrices(), rows, kv.keyBlock(0, 0), kv.keyBlockOffsetBytes(0, 0), kv.headDim(),
                    WARMUP_BUDGET_NANOS);
        }
    }

    /** What the kernel warm-up at load did and what the JIT said at its end; empty when the options turned it off. */
    public java.util.Optional<KernelWarmup.Report> kernelWarmup() {
        return java.util.Optional.ofNullable(warmup);
    }

    /** The tokenizer loaded on the other thread, its failure rethrown as it was. */
    private static Tokenizer join(java.util.concurrent.FutureTask<Tokenizer> load) {
        boolean interrupted = false;
        try {
            while (true) {
                try {
                    return load.get();
                } catch (InterruptedException e) {
                    interrupted = true;
                } catch (java.util.concurrent.ExecutionException e) {
                    if (e.getCause() instanceof RuntimeException re) {
                        throw re;
                    }
                    if (e.getCause() instanceof Error er) {
                        throw er;
                    }
                    throw new LockstepException("tokenizer load failed: " + e.getCause(), e.getCause());
                }
            }
        } finally {
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }

    /** A session whose context may grow to the model's {@code max_position_embeddings}. */
    public Session newSession() {
        return newSession(model.maxPositions());
    }

    /**
     * A session of up to {@code contextTokens} positions. Its KV pages come from the engine's pool as it grows,
     * so a large context costs nothing until used; when the pool is full, the call that needed a page fails.
     */
    public Session newSession(int contextTokens) {
        checkOpen();
        if (contextTokens < 1) {
            throw new IllegalArgumentException("context must be at least 1 token, got " + contextTokens);
        }
        if (contextTokens > model.maxPositions()) {
            throw new IllegalArgumentException("context of " + contextTokens + " tokens exceeds the model's max_position_embeddings ("
                    + model.maxPositions() + ")");
        }
        return new Session(this, new PagedKvCache(kvPool, contextTokens), prefixCache);
    }

    /** The engine's KV page pool (shared by every session). */
    public KvPagePool kvPool() {
        return kvPool;
    }

    /** The DISK tier of KV memory (the spill file of the prefix cache's cold pages), or null. */
    public KvDiskStore kvDisk() {
        return kvDisk;
    }

    /** The prefix cache, or null when the engine runs without one. */
    public PrefixCache prefixCache() {
        return prefixCache;
    }

    Scheduler scheduler() {
        return scheduler;
    }

    /**
     * The scheduler's steps so far: {@code [0]} wall time of each step in nanoseconds (the batched forward and
     * sampling: every decoding session's time per token is at least this), {@code [1]} tokens per step. Copies.
     */
    public org.HdrHistogram.Histogram[] stepHistograms() {
        return scheduler.stepHistograms();
    }

    /**
     * Tells {@code l} about every step from the next one on (null: nobody); see {@link StepListener}. The call for a
     * step comes after its tokens are delivered, so it may come after a {@code generate} has returned; once
     * {@link #close} returns, every call has been made.
     */
    public void stepListener(StepListener l) {
        scheduler.listener(l);
    }

    /** Forward steps the scheduler has run. */
    /**
     * The per-token latency target at work ({@link EngineOptions#withTokenSloNanos}): steps that carried decode tokens,
     * how many of them carried nothing else and still took longer than the target (the target is below what the
     * decode tokens alone cost), how many had a prefill chunk cut to fit, and the fitted cost model in microseconds
     * (per step, per decode token, per decode context position, per prefill token, per prefill attended position; null
     * until fitted). Null when the engine has no target.
     */
    public TokenSloReport tokenSloReport() {
        StepBudget.Report r = scheduler.stepBudget();
        return r == null ? null : new TokenSloReport(r.targetNanos(), r.decodeSteps(), r.decodeOnlyOverTarget(), r.prefillCutSteps(),
                r.coefficientsMicros());
    }

    /** See {@link #tokenSloReport()}. */
    public record TokenSloReport(long targetNanos, long decodeSteps, long decodeOnlyOverTarget, long prefillCutSteps, double[] coefficientsMicros) {
    }

    public long schedulerSteps() {
        return scheduler.steps();
    }

    void checkOpen() {
        if (closed.get()) {
            throw new IllegalStateException("engine is closed");
        }
    }

    public boolean isClosed() {
        return closed.get();
    }

    public CausalLm model() {
        return model;
    }

    public Tokenizer tokenizer() {
        return tokenizer;
    }

    /** The lowest end-of-sequence id (see {@link #specialTokens()} for the whole set). */
    public OptionalInt eosTokenId() {
        int[] eos = special.eos();
        return eos.length == 0 ? OptionalInt.empty() : OptionalInt.of(eos[0]);
    }

    /** BOS, the end-of-sequence set and the special tokens by name, as the model's files declare them. */
    public SpecialTokens specialTokens() {
        return special;
    }

    public Path modelDir() {
        return modelDir;
    }

    public int threads() {
        return pool.threads();
    }

    public String kernelsName() {
        return kernels.name();
    }

    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        scheduler.close(); // finishes the step in flight, fails what is queued
        model.close();
        tokenizer.close();
        pool.close();
        kvPool.close();
        if (kvDisk != null) {
            kvDisk.close();
        }
    }
}
