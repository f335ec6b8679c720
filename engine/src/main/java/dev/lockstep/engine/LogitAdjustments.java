package dev.lockstep.engine;

import java.util.Map;

/**
 * What a request changes in the logits before sampling, in this order: {@code logitBias} (added to the ids named),
 * the repetition penalty (HF's: over the ids of the last {@code lastN} context tokens, a positive logit divided by it,
 * a negative one multiplied), frequency and presence penalties (OpenAI's: minus {@code count * frequency +
 * presence} for each id in that window), then min-p (ids whose probability at the request's temperature is below
 * {@code minP} times the most likely one's are removed: their logit becomes -infinity). {@code lastN} -1 is the whole
 * context. A deterministic function of the logits and the context, so a request's tokens stay independent of its
 * batch mates.
 */
public record LogitAdjustments(Map<Integer, Float> logitBias, float repetitionPenalty, float frequencyPenalty, float presencePenalty,
                               int lastN, float minP) {
    public static final LogitAdjustments NONE = new LogitAdjustments(Map.of(), 1f, 0f, 0f, 64, 0f);

    public LogitAdjustments {
        logitBias = Map.copyOf(logitBias);
        if (!(repetitionPenalty > 0f) || Float.isInfinite(repetitionPenalty)) {
            throw new IllegalArgumentException("repetition penalty must be a finite number > 0 (1 = off), got " + repetitionPenalty);
        }
        if (!Float.isFinite(frequencyPenalty) || !Float.isFinite(presencePenalty)) {
            throw new IllegalArgumentException("frequency and presence penalties must be finite, got " + frequencyPenalty + ", " + presencePenalty);
        }
        if (lastN < -1) {
            throw new IllegalArgumentException("penalty window must be -1 (whole context), 0 (off) or positive, got " + lastN);
        }
        if (!(minP >= 0f && minP <= 1f)) {
            throw new IllegalArgumentException("min-p must be in [0, 1], got " + minP);
        }
        for (Map.Entry<Integer, Float> e : logitBias.entrySet()) {
            if (e.getKey() < 0 || !Float.isFinite(e.getValue())) {
                throw new IllegalArgumentException("logit bias " + e.getKey() + " -> " + e.getValue() + ": ids are >= 0, biases finite");
            }
        }
    }

    public boolean none() {
        return logitBias.isEmpty() && repetitionPenalty == 1f && frequencyPenalty == 0f && presencePenalty == 0f && minP == 0f;
    }

    /**
     * Applies the adjustments to {@code row[0 .. vocab)} given the context {@code history[0 .. historyLength)};
     * {@code counts} is scratch of {@code vocab} ints, left all zero.
     */
    void apply(float[] row, int vocab, int[] history, int historyLength, float temperature, int[] counts) {
        for (Map.Entry<Integer, Float> e : logitBias.entrySet()) {
            if (e.getKey() >= vocab) {
                throw new IllegalArgumentException("logit bias names token id " + e.getKey() + ", outside the vocabulary [0, " + vocab + ")");
            }
            row[e.getKey()] += e.getValue();
        }
        if ((repetitionPenalty != 1f || frequencyPenalty != 0f || presencePenalty != 0f) && lastN != 0) {
            int from = lastN < 0 ? 0 : Math.max(0, historyLength - lastN);
            for (int i = from; i < historyLength; i++) {
                counts[history[i]]++;
            }
            for (int i = from; i < historyLength; i++) {
                int id = history[i];
                int c = counts[id];
                if (c == 0) {
                    continue; // already applied
                }
                float l = row[id];
                if (repetitionPenalty != 1f) {
                    l = l > 0 ? l / repetitionPenalty : l * repetitionPenalty;
                }
                row[id] = l - (c * frequencyPenalty + presencePenalty);
                counts[id] = 0;
            }
        }
        if (minP > 0f && temperature > 0f) {
            float max = Float.NEGATIVE_INFINITY;
            for (int i = 0; i < vocab; i++) {
                max = Math.max(max, row[i]);
            }
            double threshold = max + temperature * Math.log(minP);
            for (int i = 0; i < vocab; i++) {
                if (row[i] < threshold) {
                    row[i] = Float.NEGATIVE_INFINITY;
                }
            }
        }
    }

    @Override
    public String toString() {
        return "bias " + logitBias + ", repetition " + repetitionPenalty + ", frequency " + frequencyPenalty + ", presence " + presencePenalty
                + ", last " + lastN + ", min-p " + minP;
    }
}
