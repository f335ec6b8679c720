package dev.lockstep.langchain4j;

/** What a request that does not say gets: at most {@code maxTokens} new tokens, the temperature, the seed. */
record LockstepDefaults(int maxTokens, float temperature, long seed) {
}
