/** The example as a named module: Lockstep's jars are automatic modules named dev.lockstep.*. */
module dev.lockstep.examples {
    requires dev.lockstep.engine;
}
