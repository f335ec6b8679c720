package dev.lockstep.memory;

/**
 * No KV page is free and none could be reclaimed. Fails the one request that asked for the page; every other
 * sequence keeps its pages and goes on.
 */
public final class KvPoolExhaustedException extends LockstepException {
    public KvPoolExhaustedException(String message) {
        super(message);
    }
}
