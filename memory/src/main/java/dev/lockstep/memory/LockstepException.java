package dev.lockstep.memory;

/**
 * Base of every error Lockstep raises for bad input: a file, a config, an argument. The message is meant
 * for a user and names the file, tensor, key or offset at fault and what was expected; the CLI prints it
 * as one line and exits with status 2.
 */
public class LockstepException extends RuntimeException {
    public LockstepException(String message) {
        super(message);
    }

    public LockstepException(String message, Throwable cause) {
        super(message, cause);
    }
}
