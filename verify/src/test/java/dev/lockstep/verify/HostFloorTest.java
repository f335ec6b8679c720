package dev.lockstep.verify;

import dev.lockstep.kernels.HostFloor;
import org.junit.jupiter.api.Test;

import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The host-floor probe runs the steps it is asked for, each about as long as asked, and every worker starts through the hook. */
class HostFloorTest {
    @Test
    void stepsLastAboutTheirTargetAndEveryWorkerStarts() {
        boolean[] started = new boolean[2];
        long[] times = HostFloor.measure(2, 200_000, 50, w -> started[w] = true);
        assertEquals(50, times.length);
        assertTrue(started[0] && started[1]);
        long[] sorted = times.clone();
        Arrays.sort(sorted);
        long median = sorted[25];
        assertTrue(median > 50_000 && median < 2_000_000, "median step " + median + " ns for a 200 us target");
        assertThrows(IllegalArgumentException.class, () -> HostFloor.measure(0, 1, 1, null));
    }
}
