package dev.lockstep.engine;

/**
 * How an {@link Engine} runs: the KV page pool's size ({@code kvCacheBytes}, 0 for the default; the HBM tier
 * of KV memory), a spill file for cold KV pages ({@code kvDiskBytes}, 0 for none; the DISK tier), the most
 * tokens one scheduler step batches ({@code batchTokens}), whether compute threads are pinned to CPUs
 * ({@code pinThreads}), whether full pages are shared through the prefix
 * cache ({@code prefixCache}), whether loading ends with the kernel warm-up that brings every Vector API kernel body
 * the model runs to C2 code before the first token ({@code kernelWarmup}, on by default; DESIGN.md, "Steady speed"), a
 * per-token latency target that caps each step's prefill ({@code tokenSloNanos}, 0 for none); {@code threads} compute threads (the caller's thread is one of them) and which
 * kernels, and how weights are prepared at load ({@code load}: as stored, or quantized to NVFP4). Every choice of
 * kernels gives the same bits; they differ in speed only.
 */
public record EngineOptions(int threads, KernelChoice kernels, dev.lockstep.moe.LoadOptions load, long kvCacheBytes,
                            long kvDiskBytes, int batchTokens, boolean prefixCache, boolean pinThreads, boolean kernelWarmup,
                            long tokenSloNanos) {
    /** Which kernels serve the forwards. */
    public enum KernelChoice {
        /** {@code KernelProvider}'s choice: the Vector API kernels when the module is present (the fast ones once compiled). */
        PROVIDER,
        /**
         * The scalar reference kernels: slower per token, but a fresh JVM runs them at compiled speed almost at
         * once, where the Vector API ones start interpreted. The faster choice for a short job in a new process.
         */
        SCALAR
    }

    /** Most compute threads an engine accepts. */
    public static final int MAX_THREADS = 1024;

    public EngineOptions {
        if (threads < 1 || threads > MAX_THREADS) {
            throw new IllegalArgumentException("threads must be in [1, " + MAX_THREADS + "], got " + threads);
        }
        if (kernels == null || load == null) {
            throw new IllegalArgumentException("kernels and load must not be null");
        }
        if (kvCacheBytes < 0) {
            throw new IllegalArgumentException("kvCacheBytes must be >= 0 (0: the default), got " + kvCacheBytes);
        }
        if (kvDiskBytes < 0) {
            throw new IllegalArgumentException("kvDiskBytes must be >= 0 (0: no DISK tier), got " + kvDiskBytes);
        }
        if (kvDiskBytes > 0 && !prefixCache) {
            throw new IllegalArgumentException("a DISK tier for KV pages needs the prefix cache (it holds the pages that move there)");
        }
        if (batchTokens < 1) {
            throw new IllegalArgumentException("batchTokens must be positive, got " + batchTokens);
        }
        if (tokenSloNanos < 0) {
            throw new IllegalArgumentException("tokenSloNanos must be >= 0 (0: no step-time budget), got " + tokenSloNanos);
        }
    }

    /**
     * Tokens one scheduler step runs at most when not set: decode tokens of every session, then prefill chunks.
     * Small chunks keep a long prompt from stalling everyone's next token (on the bundled model, `bench agentic`:
     * 64 gives 8-9x TTFT with the prefix cache and token p99/p50 about 2; 512 gave 1x and 14).
     */
    public static final int DEFAULT_BATCH_TOKENS = 64;

    public EngineOptions(int threads, KernelChoice kernels, dev.lockstep.moe.LoadOptions load) {
        this(threads, kernels, load, 0, 0, DEFAULT_BATCH_TOKENS, true, false, true, 0);
    }

    public EngineOptions(int threads, KernelChoice kernels) {
        this(threads, kernels, dev.lockstep.moe.LoadOptions.DEFAULT);
    }

    /** These options with the weights prepared as {@code load} says. */
    public EngineOptions withLoad(dev.lockstep.moe.LoadOptions load) {
        return new EngineOptions(threads, kernels, load, kvCacheBytes, kvDiskBytes, batchTokens, prefixCache, pinThreads, kernelWarmup, tokenSloNanos);
    }

    /** These options with a KV page pool of {@code bytes} (0: {@link Engine#DEFAULT_KV_CACHE_BYTES}). */
    public EngineOptions withKvCacheBytes(long bytes) {
        return new EngineOptions(threads, kernels, load, bytes, kvDiskBytes, batchTokens, prefixCache, pinThreads, kernelWarmup, tokenSloNanos);
    }

    /** These options with a DISK tier of {@code bytes} for the prefix cache's cold KV pages (0: none). */
    public EngineOptions withKvDiskBytes(long bytes) {
        return new EngineOptions(threads, kernels, load, kvCacheBytes, bytes, batchTokens, prefixCache, pinThreads, kernelWarmup, tokenSloNanos);
    }

    /** These options with at most {@code tokens} tokens per scheduler step. */
    public EngineOptions withBatchTokens(int tokens) {
        return new EngineOptions(threads, kernels, load, kvCacheBytes, kvDiskBytes, tokens, prefixCache, pinThreads, kernelWarmup, tokenSloNanos);
    }

    /**
     * These options with the compute threads pinned (worker i on CPU i, through {@code sched_setaffinity}) or not;
     * where pinning is refused the engine says so once and runs unpinned.
     */
    public EngineOptions withPinnedThreads(boolean pin) {
        return new EngineOptions(threads, kernels, load, kvCacheBytes, kvDiskBytes, batchTokens, prefixCache, pin, kernelWarmup, tokenSloNanos);
    }

    /** These options with the prefix cache on or off. */
    public EngineOptions withPrefixCache(boolean on) {
        return new EngineOptions(threads, kernels, load, kvCacheBytes, kvDiskBytes, batchTokens, on, pinThreads, kernelWarmup, tokenSloNanos);
    }

    /**
     * These options with the kernel warm-up at load on (the default) or off. Off, a fresh JVM runs its first
     * thousands of kernel calls on C1 code (a decode step can take twice as long for tens of seconds); the scalar
     * kernels never need it.
     */
    public EngineOptions withKernelWarmup(boolean on) {
        return new EngineOptions(threads, kernels, load, kvCacheBytes, kvDiskBytes, batchTokens, prefixCache, pinThreads, on, tokenSloNanos);
    }

    /**
     * These options with a per-token latency target (0: none): a step that carries decode tokens takes prefill chunks
     * only up to what the step-cost model, fitted online to the recent steps, says fits in {@code nanos}
     * (Sarathi-Serve's stall-free batching; DESIGN.md). Tokens are the same either way; only the chunking changes.
     */
    public EngineOptions withTokenSloNanos(long nanos) {
        return new EngineOptions(threads, kernels, load, kvCacheBytes, kvDiskBytes, batchTokens, prefixCache, pinThreads, kernelWarmup, nanos);
    }

    public EngineOptions(int threads) {
        this(threads, KernelChoice.PROVIDER);
    }

    public static EngineOptions defaults() {
        return new EngineOptions(Runtime.getRuntime().availableProcessors());
    }
}
