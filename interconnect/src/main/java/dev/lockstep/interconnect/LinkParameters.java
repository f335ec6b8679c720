package dev.lockstep.interconnect;

/**
 * What a schedule needs to know about its links: how many 320-byte vector slots one holds in flight
 * ({@code capacityVectors}, a power of two: sends beyond it wait) and the most vectors one message may take
 * ({@code maxMessageVectors}, header included: a shared-memory ring takes its whole capacity, a network transport its
 * largest frame). The schedule compiler cuts messages into fragments of {@code maxMessageVectors - 1} payload vectors
 * and the verifier simulates the links at {@code capacityVectors}.
 */
public record LinkParameters(int capacityVectors, int maxMessageVectors) {
    public LinkParameters {
        if (capacityVectors < 2 || Integer.bitCount(capacityVectors) != 1) {
            throw new IllegalArgumentException("link capacity must be a power of two >= 2 vectors, got " + capacityVectors);
        }
        if (maxMessageVectors < 2 || maxMessageVectors > capacityVectors) {
            throw new IllegalArgumentException("a message must fit 2.." + capacityVectors + " vectors (header + payload), got " + maxMessageVectors);
        }
    }

    /** A shared-memory ring of {@code capacityVectors} slots: one message may fill it. */
    public static LinkParameters ring(int capacityVectors) {
        return new LinkParameters(capacityVectors, capacityVectors);
    }
}
