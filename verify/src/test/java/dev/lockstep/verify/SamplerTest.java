package dev.lockstep.verify;

import dev.lockstep.engine.Sampler;
import dev.lockstep.engine.SamplingParams;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SamplerTest {
    static float[] randomLogits(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] l = new float[n];
        for (int i = 0; i < n; i++) {
            l[i] = (float) (r.nextDouble() * 8 - 4);
        }
        return l;
    }

    static int[] draw(SamplingParams p, float[] logits, int count) {
        Sampler s = new Sampler(p);
        int[] out = new int[count];
        for (int i = 0; i < count; i++) {
            out[i] = s.sample(logits, 0, logits.length);
        }
        return out;
    }

    @Test
    void greedyIsArgmaxWithLowestIdOnTies() {
        float[] l = {1f, 3f, 3f, 2f};
        assertEquals(1, new Sampler(SamplingParams.GREEDY).sample(l, 0, 4));
    }

    @Test
    void sameSeedSameTokensOtherSeedOtherTokens() {
        float[] l = randomLogits(4096, 1);
        SamplingParams p = new SamplingParams(1.0f, 0, 1f, 1234);
        assertArrayEquals(draw(p, l, 200), draw(p, l, 200));
        assertNotEquals(java.util.Arrays.toString(draw(p, l, 200)),
                java.util.Arrays.toString(draw(new SamplingParams(1.0f, 0, 1f, 1235), l, 200)));
    }

    @Test
    void topKOneAndTinyTopPAreGreedy() {
        float[] l = randomLogits(4096, 2);
        int argmax = Sampler.argmax(l, 0, l.length);
        for (int t : draw(new SamplingParams(1.5f, 1, 1f, 9), l, 50)) {
            assertEquals(argmax, t);
        }
        for (int t : draw(new SamplingParams(1.5f, 0, 1e-6f, 9), l, 50)) {
            assertEquals(argmax, t);
        }
    }

    @Test
    void topKKeepsOnlyTheKLargest() {
        float[] l = {0f, 5f, 1f, 4f, 3f};
        for (int t : draw(new SamplingParams(10f, 2, 1f, 3), l, 500)) {
            assertTrue(t == 1 || t == 3, "token " + t);
        }
    }

    @Test
    void frequenciesFollowTheSoftmax() {
        // p(1) = 3/4 at temperature 1; with temperature 2 logits halve: p(1) = sqrt(3)/(1+sqrt(3)).
        float[] l = {0f, (float) Math.log(3)};
        int n = 20000;
        double ones = java.util.Arrays.stream(draw(new SamplingParams(1f, 0, 1f, 5), l, n)).filter(t -> t == 1).count() / (double) n;
        assertEquals(0.75, ones, 0.015);
        double hot = java.util.Arrays.stream(draw(new SamplingParams(2f, 0, 1f, 5), l, n)).filter(t -> t == 1).count() / (double) n;
        assertEquals(Math.sqrt(3) / (1 + Math.sqrt(3)), hot, 0.015);
    }

    @Test
    void rejectsBadParameters() {
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(-1f, 0, 1f, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1f, -2, 1f, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1f, 0, 0f, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(1f, 0, 1.5f, 0));
        assertThrows(IllegalArgumentException.class, () -> new SamplingParams(Float.NaN, 0, 1f, 0));
    }
}
