package dev.lockstep.engine;

import java.util.List;

/**
 * One generation: the tokens to append first (may be empty to continue the context), at most {@code maxTokens} new
 * tokens, the sampling, and what stops it besides the length: the model's end-of-sequence set (unless
 * {@code ignoreEos}), {@code stopTokenIds}, and {@code stop} strings (the text before the first match is kept; text
 * that could be the start of a stop string is held back until decided, so a stop string never reaches the caller),
 * and the logit adjustments applied before sampling ({@link LogitAdjustments}).
 */
public record GenerateRequest(int[] prompt, int maxTokens, SamplingParams sampling, List<String> stop, int[] stopTokenIds,
                              boolean ignoreEos, LogitAdjustments adjust, int logprobs) {
    /** Most alternatives a token event can report (OpenAI's limit). */
    public static final int MAX_LOGPROBS = 20;

    public GenerateRequest {
        if (logprobs < 0 || logprobs > MAX_LOGPROBS) {
            throw new IllegalArgumentException("logprobs must be in [0, " + MAX_LOGPROBS + "], got " + logprobs);
        }
        prompt = prompt.clone();
        stop = List.copyOf(stop);
        stopTokenIds = stopTokenIds.clone();
        if (maxTokens < 0) {
            throw new IllegalArgumentException("maxTokens must be >= 0, got " + maxTokens);
        }
        for (String s : stop) {
            if (s.isEmpty()) {
                throw new IllegalArgumentException("a stop string is empty");
            }
        }
    }

    /** Greedy, stopping at the model's end-of-sequence set or after {@code maxTokens}. */
    public static GenerateRequest of(int[] prompt, int maxTokens) {
        return new GenerateRequest(prompt, maxTokens, SamplingParams.GREEDY, List.of(), new int[0], false, LogitAdjustments.NONE, 0);
    }

    public GenerateRequest withSampling(SamplingParams s) {
        return new GenerateRequest(prompt, maxTokens, s, stop, stopTokenIds, ignoreEos, adjust, logprobs);
    }

    public GenerateRequest withStop(List<String> strings) {
        return new GenerateRequest(prompt, maxTokens, sampling, strings, stopTokenIds, ignoreEos, adjust, logprobs);
    }

    public GenerateRequest withStopTokenIds(int... ids) {
        return new GenerateRequest(prompt, maxTokens, sampling, stop, ids, ignoreEos, adjust, logprobs);
    }

    public GenerateRequest withIgnoreEos(boolean ignore) {
        return new GenerateRequest(prompt, maxTokens, sampling, stop, stopTokenIds, ignore, adjust, logprobs);
    }

    /** Logit bias, repetition/frequency/presence penalties and min-p ({@link LogitAdjustments}). */
    public GenerateRequest withAdjustments(LogitAdjustments a) {
        return new GenerateRequest(prompt, maxTokens, sampling, stop, stopTokenIds, ignoreEos, a, logprobs);
    }

    /** Each token event carries its log-probability and the {@code n} most likely ids with theirs ({@code 0} = off). */
    public GenerateRequest withLogprobs(int n) {
        return new GenerateRequest(prompt, maxTokens, sampling, stop, stopTokenIds, ignoreEos, adjust, n);
    }

    @Override
    public int[] prompt() {
        return prompt.clone();
    }

    @Override
    public int[] stopTokenIds() {
        return stopTokenIds.clone();
    }
}
