/** Off-heap tiers, mmapped safetensors checkpoints, binary layout descriptors. */
module dev.lockstep.memory {
    requires transitive com.fasterxml.jackson.databind; // Json.MAPPER is public
    exports dev.lockstep.memory;
}
