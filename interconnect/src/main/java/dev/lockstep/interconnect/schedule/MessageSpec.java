package dev.lockstep.interconnect.schedule;

import dev.lockstep.interconnect.VectorDescriptor;

/**
 * One transfer of a step: from worker {@code from} to worker {@code to} on their link, as part of region
 * {@code region}. An {@link Kind#INPUT} is data the sender holds before the region (the receiver needs it to
 * compute its part); an {@link Kind#OUTPUT} is what the sender's part of the region produces. A {@link Kind#FLOW}
 * is a declared dependency between two regions: produced by the sender's part of {@code region}, consumed by the
 * receiver's part of {@code consumer} (the dependency-driven schedules: see {@link StepGraph#flow}). The payload is
 * at most {@code maxFloats} float32 values (0: a doorbell that only orders the two workers); the actual size
 * is decided at run time (a MoE layer's routing) and travels in the message's header vector.
 *
 * @param consumer the region whose part consumes a FLOW; for INPUT, {@code region}; for OUTPUT, -1 (every later region)
 */
public record MessageSpec(int id, String name, int region, int from, int to, Kind kind, int maxFloats, int consumer) {
    public enum Kind { INPUT, OUTPUT, FLOW }

    /** An INPUT or OUTPUT of {@code region}. */
    public MessageSpec(int id, String name, int region, int from, int to, Kind kind, int maxFloats) {
        this(id, name, region, from, to, kind, maxFloats, kind == Kind.INPUT ? region : -1);
    }

    public MessageSpec {
        if (kind == Kind.FLOW && consumer <= region) {
            throw new IllegalArgumentException("flow " + name + " is consumed by region " + consumer + ", not after its producer " + region);
        }
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
