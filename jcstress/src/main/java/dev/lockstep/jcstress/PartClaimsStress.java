package dev.lockstep.jcstress;

import dev.lockstep.interconnect.schedule.PartClaims;
import org.openjdk.jcstress.annotations.Actor;
import org.openjdk.jcstress.annotations.Description;
import org.openjdk.jcstress.annotations.JCStressTest;
import org.openjdk.jcstress.annotations.Outcome;
import org.openjdk.jcstress.annotations.State;
import org.openjdk.jcstress.infra.results.ZZ_Result;
import org.openjdk.jcstress.infra.results.ZZZ_Result;

import static org.openjdk.jcstress.annotations.Expect.ACCEPTABLE;
import static org.openjdk.jcstress.annotations.Expect.FORBIDDEN;

/**
 * The schedule's takeover claims: a part is run by its worker or by the coordinator, never both and never
 * neither once both have tried; a worker late by a region (an older stamp) never wins a part.
 */
public final class PartClaimsStress {
    private PartClaimsStress() {
    }

    @JCStressTest
    @Description("Worker and coordinator claim the same part in the same run: exactly one wins.")
    @Outcome(id = "true, false", expect = ACCEPTABLE, desc = "the worker runs its part")
    @Outcome(id = "false, true", expect = ACCEPTABLE, desc = "the coordinator took it over")
    @Outcome(expect = FORBIDDEN, desc = "run twice or not at all")
    @State
    public static class SameRun {
        final PartClaims claims = new PartClaims(1);

        @Actor
        public void worker(ZZ_Result r) {
            r.r1 = claims.claim(0, 7);
        }

        @Actor
        public void coordinator(ZZ_Result r) {
            r.r2 = claims.claim(0, 7);
        }
    }

    @JCStressTest
    @Description("A late worker (the previous run's stamp) races the coordinator's next run: the late claim never wins;"
            + " the next run's part is the coordinator's or its worker's, once.")
    @Outcome(id = "false, true, false", expect = ACCEPTABLE, desc = "the coordinator took the next run's part")
    @Outcome(id = "false, false, true", expect = ACCEPTABLE, desc = "the worker, caught up, runs the next run's part")
    @Outcome(expect = FORBIDDEN, desc = "a stale claim won, or the part ran twice or not at all")
    @State
    public static class LateWorker {
        final PartClaims claims = new PartClaims(1);

        public LateWorker() {
            claims.claim(0, 7); // run 7: the coordinator took the part over
        }

        @Actor
        public void lateWorker(ZZZ_Result r) {
            r.r1 = claims.claim(0, 7);    // its run-7 message, late
            r.r3 = claims.claim(0, 8);    // then run 8's
        }

        @Actor
        public void coordinator(ZZZ_Result r) {
            r.r2 = claims.claim(0, 8);
        }
    }
}
