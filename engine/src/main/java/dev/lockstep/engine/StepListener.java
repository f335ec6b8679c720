package dev.lockstep.engine;

/**
 * Told about every scheduler step after it ran: what the step carried and how long its forward and sampling took.
 * Called on the scheduler's thread between steps, so it delays the next one: keep it short and never block.
 * Primitives only, so a step allocates nothing for it. A listener that throws is removed (one line on standard
 * error says so); the step and every session go on.
 */
@FunctionalInterface
public interface StepListener {
    /**
     * @param decodeTokens            tokens of requests that are generating (one per such request)
     * @param decodeContextPositions  the sum of their sessions' context lengths (positions each attends over, less one)
     * @param prefillTokens           prompt tokens fed in this step (chunks of requests not yet generating)
     * @param prefillAttendPositions  the sum over those tokens of the positions each attends over, less one
     * @param sequences               sequences in the step
     * @param stepNanos               wall time of the step: the batched forward and sampling
     */
    void onStep(int decodeTokens, long decodeContextPositions, int prefillTokens, long prefillAttendPositions, int sequences,
                long stepNanos);
}
