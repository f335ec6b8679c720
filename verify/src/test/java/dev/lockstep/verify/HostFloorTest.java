package dev.lockstep.verify;

import dev.lockstep.kernels.HostFloor;
import org.junit.jupiter.api.Test;

import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The host-floor probe runs the steps it is asked for, none much shorter than asked, and every worker starts through the hook. */
class HostFloorTest {
    @Test
    void stepsLastAtLeastTheirTargetAndEveryWorkerStarts() {
        boolean[] started = new boolean[2];
        long[] times = HostFloor.measure(2, 200_000, 50, w -> started[w] = true);
        assertEquals(50, times.length);
        assertTrue(started[0] && started[1]);
        long[] sorted = times.clone();
        Arrays.sort(sorted);
        long median = sorted[25];
        // the work is calibrated on the fastest of five runs, so a step does not end much before its target; how much
        // later it ends is the host's (a busy 2-vCPU host stretched the median to 8 ms once in CI): that is what the
        // probe measures, not something a test can bound
        assertTrue(median > 50_000, "median step " + median + " ns for a 200 us target");
        assertThrows(IllegalArgumentException.class, () -> HostFloor.measure(0, 1, 1, null));
    }
}
