package dev.lockstep.engine;

/**
 * How the next token is chosen. {@code temperature == 0} is greedy (argmax, lowest id on ties). Otherwise
 * logits are divided by the temperature, cut to the {@code topK} largest ({@code 0} = no cut), then to the
 * smallest set whose probability reaches {@code topP} ({@code 1} = no cut), and sampled with a generator
 * seeded by {@code seed}: the same seed gives the same tokens.
 */
public record SamplingParams(float temperature, int topK, float topP, long seed) {
    public static final SamplingParams GREEDY = new SamplingParams(0f, 0, 1f, 0L);

    public SamplingParams {
        if (!(temperature >= 0f) || Float.isInfinite(temperature)) {
            throw new IllegalArgumentException("temperature must be a finite number >= 0, got " + temperature);
        }
        if (topK < 0) {
            throw new IllegalArgumentException("top-k must be >= 0 (0 = off), got " + topK);
        }
        if (!(topP > 0f && topP <= 1f)) {
            throw new IllegalArgumentException("top-p must be in (0, 1], got " + topP);
        }
    }

    public boolean greedy() {
        return temperature == 0f;
    }
}
