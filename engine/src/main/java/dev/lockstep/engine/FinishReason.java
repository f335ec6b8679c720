package dev.lockstep.engine;

/** Why a generation ended (OpenAI's {@code finish_reason} values, lower-cased by the server). */
public enum FinishReason {
    /** An end-of-sequence id of the model's set, a stop token id or a stop string. */
    STOP,
    /** {@code maxTokens} generated. */
    LENGTH,
    /** {@link Generation#cancel()} (or the consumer's thread interrupted while waiting). */
    CANCELLED,
    /** The forward failed; {@link Generation.Completion#error()} holds why. */
    ERROR
}
