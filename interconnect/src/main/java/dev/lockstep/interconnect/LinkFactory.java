package dev.lockstep.interconnect;

import java.lang.foreign.Arena;

/**
 * Opens the links of a full mesh of workers: one per ordered pair, all with the same {@link #parameters()}. The
 * executor asks for each link once, at construction; {@code arena} is the executor's (closed with it).
 */
public interface LinkFactory {
    LinkParameters parameters();

    Link open(int from, int to, Arena arena);

    /** Shared-memory {@link VectorRing}s of {@code capacityVectors} slots: workers in one process. */
    static LinkFactory sharedMemory(int capacityVectors) {
        LinkParameters p = LinkParameters.ring(capacityVectors);
        return new LinkFactory() {
            @Override
            public LinkParameters parameters() {
                return p;
            }

            @Override
            public Link open(int from, int to, Arena arena) {
                return new VectorRing(arena, capacityVectors);
            }

            @Override
            public String toString() {
                return "shared-memory rings of " + capacityVectors + " vectors";
            }
        };
    }
}
