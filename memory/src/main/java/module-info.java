/** Off-heap tiers, mmapped safetensors checkpoints, binary layout descriptors. */
module dev.lockstep.memory {
    requires com.fasterxml.jackson.databind;
    exports dev.lockstep.memory;
}
