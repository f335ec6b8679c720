package dev.lockstep.engine;

/** How an {@link Engine} runs: {@code threads} compute threads (the caller's thread is one of them). */
public record EngineOptions(int threads) {
    public EngineOptions {
        if (threads < 1 || threads > 1024) {
            throw new IllegalArgumentException("threads must be in [1, 1024], got " + threads);
        }
    }

    public static EngineOptions defaults() {
        return new EngineOptions(Runtime.getRuntime().availableProcessors());
    }
}
