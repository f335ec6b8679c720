package dev.lockstep.interconnect.schedule;

/**
 * A schedule the verifier rejects, naming the worker and the op at fault, or one that went wrong while
 * running (a worker's part failed, a message arrived out of order). Either is a bug in whoever built the
 * step, not bad user input.
 */
public final class ScheduleException extends RuntimeException {
    public ScheduleException(String message) {
        super(message);
    }

    public ScheduleException(String message, Throwable cause) {
        super(message, cause);
    }
}
