/**
 * Stateless math over MemorySegments: scalar reference kernels and Vector API kernels (bit-identical).
 * The Vector API is required here, so on the module path it is resolved without any flag.
 */
module dev.lockstep.kernels {
    requires transitive dev.lockstep.memory;
    requires jdk.incubator.vector;
    requires java.management; // JitState: the JIT's code list through the DiagnosticCommand MBean
    requires jdk.management;  // ...which this module registers
    exports dev.lockstep.kernels;
}
