/** Vector rings, links, pinning, and compiled step schedules between workers (compiler, verifier, executor). */
module dev.lockstep.interconnect {
    requires transitive org.agrona; // ScheduleExecutor takes Agrona idle strategies
    requires transitive HdrHistogram; // and reports HdrHistograms
    exports dev.lockstep.interconnect;
    exports dev.lockstep.interconnect.schedule;
}
