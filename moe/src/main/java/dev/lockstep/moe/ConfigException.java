package dev.lockstep.moe;

import dev.lockstep.memory.LockstepException;

/** A model's config.json is missing a key, has a wrong value, or asks for something not supported. */
public final class ConfigException extends LockstepException {
    public ConfigException(String message) {
        super(message);
    }

    public ConfigException(String message, Throwable cause) {
        super(message, cause);
    }
}
