package dev.lockstep.engine;

/**
 * Counts and timings of one {@link Session#generate} call. Prefill time covers the prompt forward;
 * decode time covers the one-token forwards ({@code decodeSteps} of them: each generated token but the
 * last is fed back), so decode tok/s is forwards per second, as llama-bench's tg reports.
 */
public record GenerationStats(int promptTokens, int generatedTokens, int decodeSteps, long prefillNanos,
                              long decodeNanos, boolean stoppedAtEos) {
    public double prefillTokensPerSecond() {
        return prefillNanos == 0 ? 0 : promptTokens * 1e9 / prefillNanos;
    }

    public double decodeTokensPerSecond() {
        return decodeNanos == 0 ? 0 : decodeSteps * 1e9 / decodeNanos;
    }
}
