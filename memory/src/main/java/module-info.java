/** Off-heap tiers, mmapped safetensors checkpoints, binary layout descriptors. */
module dev.lockstep.memory {
    requires transitive com.fasterxml.jackson.databind; // Json.MAPPER is public
    requires java.management; // TierPlacement: the machine's physical memory
    requires jdk.management;
    exports dev.lockstep.memory;
}
