package dev.lockstep.moe.block;

import dev.lockstep.interconnect.schedule.RegionTask;
import dev.lockstep.interconnect.schedule.StepGraph;

/**
 * A region whose data moves between workers as messages (the MoE experts under expert placement): it declares
 * its parts, the weights each needs and its messages (with their largest sizes) when its step is compiled, and
 * runs whole on the coordinator while the step is being recorded.
 */
public interface DataRegion extends RegionTask {
    /**
     * Adds this region's parts, weight groups and messages to {@code g} as region {@code region}, its messages
     * sized for batches of up to {@code maxTokens} tokens (the schedule serves every batch of its bucket).
     */
    void declare(StepGraph g, int region, int maxTokens);

    /** Runs the whole region on the calling thread (worker 0), as a one-worker step would. */
    void runAll();
}
