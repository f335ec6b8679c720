package dev.lockstep.engine;

/** Whether generation ends at the end-of-sequence token. */
public enum StopCondition {
    /** Stop before emitting the model's {@code eos_token_id}. */
    EOS,
    /** Generate exactly the requested number of tokens. */
    IGNORE_EOS
}
