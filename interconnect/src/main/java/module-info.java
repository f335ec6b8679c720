/** Vector rings, links and schedules between workers (today: the 320-byte vector layout). */
module dev.lockstep.interconnect {
    exports dev.lockstep.interconnect;
}
