package dev.lockstep.engine;

/**
 * How an {@link Engine} runs: {@code threads} compute threads (the caller's thread is one of them) and which
 * kernels, and how weights are prepared at load ({@code load}: as stored, or quantized to NVFP4). Every choice of
 * kernels gives the same bits; they differ in speed only.
 */
public record EngineOptions(int threads, KernelChoice kernels, dev.lockstep.moe.LoadOptions load) {
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
    }

    public EngineOptions(int threads, KernelChoice kernels) {
        this(threads, kernels, dev.lockstep.moe.LoadOptions.DEFAULT);
    }

    /** These options with the weights prepared as {@code load} says. */
    public EngineOptions withLoad(dev.lockstep.moe.LoadOptions load) {
        return new EngineOptions(threads, kernels, load);
    }

    public EngineOptions(int threads) {
        this(threads, KernelChoice.PROVIDER);
    }

    public static EngineOptions defaults() {
        return new EngineOptions(Runtime.getRuntime().availableProcessors());
    }
}
