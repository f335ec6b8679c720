/** Model families (config, weights, forward), shared blocks, KV caches. */
module dev.lockstep.moe {
    requires transitive dev.lockstep.memory;
    requires transitive dev.lockstep.kernels;
    requires transitive dev.lockstep.interconnect;
    requires transitive com.fasterxml.jackson.databind; // ModelConfigJson hands out JsonNodes
    exports dev.lockstep.moe;
    exports dev.lockstep.moe.block;
    exports dev.lockstep.moe.decoder;
    exports dev.lockstep.moe.families;
    exports dev.lockstep.moe.kv;
    exports dev.lockstep.moe.qwen3;
    exports dev.lockstep.moe.synth;
}
