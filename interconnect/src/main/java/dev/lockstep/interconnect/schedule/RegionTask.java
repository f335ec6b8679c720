package dev.lockstep.interconnect.schedule;

import java.lang.foreign.MemorySegment;

/**
 * The work of one region of a step, as the {@link ScheduleExecutor} runs it: each worker's part, and the
 * payload of the region's messages. The coordinator sets a region's task before sending the region's inputs;
 * a worker reads it only after receiving one of them, so the ring's release/acquire pair publishes it.
 */
public interface RegionTask {
    /**
     * Runs worker {@code worker}'s part of the region. {@code stamp} identifies this run of the region (it grows
     * from run to run; a worker has it from the coordinator's message): a part the coordinator may take over is
     * claimed with it first, so that a late worker finds its part taken and skips it.
     */
    void compute(int worker, long stamp);

    /**
     * On the coordinator, at the RECV of an OUTPUT message {@code m}: true when the coordinator has computed the
     * sender's whole part itself in this run (taken over), so the message carries nothing it needs. The
     * executor then does not wait for it: it receives it later, before anything else on that link.
     */
    default boolean takenOver(MessageSpec m) {
        return false;
    }

    /** On the sender, once per step: the floats {@code m} carries this step, at most {@code m.maxFloats()}. */
    int payloadFloats(MessageSpec m);

    /** On the sender: copies payload floats {@code [floatOffset, floatOffset + floats)} of {@code m} to {@code dst}. */
    void write(MessageSpec m, int floatOffset, MemorySegment dst, long dstOffsetBytes, int floats);

    /**
     * On the receiver: takes payload floats {@code [floatOffset, floatOffset + floats)} of {@code m} from
     * {@code src}; {@code totalFloats} is the whole message's payload this step.
     */
    void read(MessageSpec m, int floatOffset, MemorySegment src, long srcOffsetBytes, int floats, int totalFloats);

    /** A region whose messages are doorbells only (no payload): they order the workers, data stays in shared memory. */
    interface Doorbells extends RegionTask {
        @Override
        default int payloadFloats(MessageSpec m) {
            return 0;
        }

        @Override
        default void write(MessageSpec m, int floatOffset, MemorySegment dst, long dstOffsetBytes, int floats) {
            throw new IllegalStateException("doorbell " + m + " has no payload");
        }

        @Override
        default void read(MessageSpec m, int floatOffset, MemorySegment src, long srcOffsetBytes, int floats, int totalFloats) {
            throw new IllegalStateException("doorbell " + m + " has no payload");
        }
    }
}
