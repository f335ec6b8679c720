package dev.lockstep.interconnect.schedule;

import dev.lockstep.interconnect.VectorDescriptor;

/**
 * One transfer of a step: from worker {@code from} to worker {@code to} on their link, as part of region
 * {@code region}. An {@link Kind#INPUT} is data the sender holds before the region (the receiver needs it to
 * compute its part); an {@link Kind#OUTPUT} is what the sender's part of the region produces. The payload is
 * at most {@code maxFloats} float32 values (0: a doorbell that only orders the two workers); the actual size
 * is decided at run time (a MoE layer's routing) and travels in the message's header vector.
 */
public record MessageSpec(int id, String name, int region, int from, int to, Kind kind, int maxFloats) {
    public enum Kind { INPUT, OUTPUT }

    public MessageSpec {
        if (from == to) {
            throw new IllegalArgumentException("message " + name + " from worker " + from + " to itself");
        }
        if (maxFloats < 0) {
            throw new IllegalArgumentException("message " + name + " has a negative size " + maxFloats);
        }
    }

    /** Payload vectors of the largest payload (80 floats per 320-byte vector, the last one padded). */
    public int maxPayloadVectors() {
        return VectorDescriptor.vectorsForFloats(maxFloats);
    }

    @Override
    public String toString() {
        return name + " (" + kind.name().toLowerCase() + ", worker " + from + " -> " + to + ", <= " + maxFloats + " floats)";
    }
}
