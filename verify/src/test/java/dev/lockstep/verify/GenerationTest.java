package dev.lockstep.verify;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.FinishReason;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.Generation;
import dev.lockstep.engine.LogitAdjustments;
import dev.lockstep.engine.SamplingParams;
import dev.lockstep.engine.Session;
import dev.lockstep.engine.StopCondition;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The generation handle ({@link Session#submit}): HF's greedy tokens through it, finish reasons (length, a stop
 * token id, a stop string with its text held back and never delivered, a cancel from another thread), usage, and
 * the session busy until the end has been read and usable after.
 */
class GenerationTest {
    static Engine engine;
    static int[] prompt;
    static int[] greedy;

    @BeforeAll
    static void load() {
        engine = Engine.load(Golden.bundledModel(), new EngineOptions(1).withKernelWarmup(false));
        prompt = Golden.intArray(Golden.json("golden.json").get("prompts").get("p0"));
        greedy = Golden.intArray(Golden.json("golden.json").get("greedy").get("p0"));
    }

    @AfterAll
    static void close() {
        engine.close();
    }

    static List<Generation.TokenEvent> drain(Generation g) {
        List<Generation.TokenEvent> events = new ArrayList<>();
        for (Generation.TokenEvent e; (e = g.next()) != null; ) {
            events.add(e);
        }
        return events;
    }

    @Test
    void greedyTokensAreHfsAndTheLengthEndsIt() {
        try (Session s = engine.newSession(128)) {
            Generation g = s.submit(GenerateRequest.of(prompt, 24).withIgnoreEos(true));
            List<Generation.TokenEvent> events = drain(g);
            Generation.Completion c = g.completion();
            assertArrayEquals(java.util.Arrays.copyOf(greedy, 24), c.tokens(), "HF's greedy tokens");
            assertEquals(FinishReason.LENGTH, c.finishReason());
            assertEquals(24, c.usage().generatedTokens());
            assertEquals(prompt.length, c.usage().promptTokens());
            assertTrue(c.usage().timeToFirstTokenNanos() > 0 && c.usage().decodeNanos() > 0, c.usage().toString());
            long[] times = c.usage().tokenTimesNanos();
            assertEquals(24, times.length, "a time per delivered token");
            for (int i = 1; i < times.length; i++) {
                assertTrue(times[i] >= times[i - 1] && times[0] > 0, "token times ascend from submit: " + java.util.Arrays.toString(times));
            }
            StringBuilder text = new StringBuilder();
            events.forEach(e -> text.append(e.text()));
            assertEquals(c.text(), text.toString(), "the events' pieces make the completion's text");
            assertEquals(engine.tokenizer().decode(c.tokens()), c.text());
            assertEquals(prompt.length + 24, s.length(), "the generated tokens are in the context");
        }
    }

    @Test
    void aStopTokenIdEndsItWithStopAndIsNotDelivered() {
        try (Session s = engine.newSession(128)) {
            Generation.Completion c = s.submit(GenerateRequest.of(prompt, 24).withIgnoreEos(true).withStopTokenIds(greedy[3])).await();
            assertEquals(FinishReason.STOP, c.finishReason());
            assertArrayEquals(java.util.Arrays.copyOf(greedy, 3), c.tokens());
        }
    }

    @Test
    void aStopStringIsHeldBackAndNeverDelivered() {
        String full;
        try (Session s = engine.newSession(128)) {
            full = s.submit(GenerateRequest.of(prompt, 40).withIgnoreEos(true)).await().text();
        }
        String stop = full.substring(full.length() / 2, full.length() / 2 + 6);
        String expected = full.substring(0, full.indexOf(stop));
        try (Session s = engine.newSession(128)) {
            Generation g = s.submit(GenerateRequest.of(prompt, 40).withIgnoreEos(true).withStop(List.of(stop, "\u0000never")));
            StringBuilder seen = new StringBuilder();
            for (Generation.TokenEvent e; (e = g.next()) != null; ) {
                seen.append(e.text());
                assertFalse(seen.toString().contains(stop), "the stop string reached the caller: " + seen);
                assertTrue(expected.startsWith(seen.toString()), "delivered text runs ahead of the stop: " + seen);
            }
            Generation.Completion c = g.completion();
            assertEquals(FinishReason.STOP, c.finishReason());
            assertEquals(expected, c.text());
            assertEquals(expected, seen.toString());
        }
    }

    @Test
    void cancelFromAnotherThreadEndsItAndTheSessionGoesOn() throws Exception {
        try (Session s = engine.newSession(512)) {
            Generation g = s.submit(GenerateRequest.of(prompt, 400).withIgnoreEos(true)
                    .withSampling(new SamplingParams(1.0f, 0, 1f, 5)));
            for (int i = 0; i < 3; i++) {
                g.next();
            }
            assertThrows(IllegalStateException.class, () -> s.generate(new int[]{1}, 1, SamplingParams.GREEDY, StopCondition.EOS, (id, t) -> { }),
                    "the session is busy until the generation's end is read");
            Thread canceller = Thread.ofPlatform().start(g::cancel);
            canceller.join();
            Generation.Completion c = g.await();
            assertEquals(FinishReason.CANCELLED, c.finishReason());
            assertTrue(c.usage().generatedTokens() < 400, "stopped early: " + c.usage());
            assertNull(g.next(), "nothing after the end");
            Generation.Completion again = s.submit(GenerateRequest.of(new int[0], 4).withIgnoreEos(true)).await();
            assertEquals(FinishReason.LENGTH, again.finishReason(), "the session is usable after a cancel");
        }
    }

    @Test
    void logitBiasPenaltiesAndMinPChangeWhatIsSampled() {
        try (Session s = engine.newSession(256)) {
            int forced = 1234;
            int[] biased = s.submit(GenerateRequest.of(prompt, 6).withIgnoreEos(true)
                    .withAdjustments(new LogitAdjustments(java.util.Map.of(forced, 1000f), 1f, 0f, 0f, 64, 0f))).await().tokens();
            assertArrayEquals(new int[]{forced, forced, forced, forced, forced, forced}, biased, "a +1000 bias wins every step");
        }
        try (Session s = engine.newSession(256)) {
            int[] distinct = s.submit(GenerateRequest.of(prompt, 24).withIgnoreEos(true)
                    .withAdjustments(new LogitAdjustments(java.util.Map.of(), 1f, 0f, 1000f, -1, 0f))).await().tokens();
            java.util.Set<Integer> seen = new java.util.HashSet<>();
            for (int id : prompt) {
                seen.add(id);
            }
            for (int id : distinct) {
                assertTrue(seen.add(id), "a presence penalty of 1000 over the whole context repeats no id: " + java.util.Arrays.toString(distinct));
            }
        }
        try (Session s = engine.newSession(256)) {
            int[] minP = s.submit(GenerateRequest.of(prompt, 24).withIgnoreEos(true).withSampling(new SamplingParams(1.0f, 0, 1f, 9))
                    .withAdjustments(new LogitAdjustments(java.util.Map.of(), 1f, 0f, 0f, 64, 1f))).await().tokens();
            assertArrayEquals(java.util.Arrays.copyOf(greedy, 24), minP, "min-p 1 keeps only the most likely token: sampling is greedy");
        }
        try (Session s = engine.newSession(256)) {
            int[] sampled = s.submit(GenerateRequest.of(prompt, 24).withIgnoreEos(true).withSampling(new SamplingParams(1.0f, 0, 1f, 9))).await().tokens();
            assertFalse(java.util.Arrays.equals(java.util.Arrays.copyOf(greedy, 24), sampled), "without min-p the same seed is not greedy");
        }
    }

    @Test
    void logprobsAreTheModelsLogSoftmaxWithTheTopAlternatives() {
        float[] first;
        try (Session s = engine.newSession(128)) {
            first = s.append(prompt).clone(); // the logits after the prompt
        }
        double max = Double.NEGATIVE_INFINITY, sum = 0;
        for (float v : first) {
            max = Math.max(max, v);
        }
        for (float v : first) {
            sum += Math.exp(v - max);
        }
        double lse = max + Math.log(sum);
        try (Session s = engine.newSession(128)) {
            Generation g = s.submit(GenerateRequest.of(prompt, 8).withIgnoreEos(true).withLogprobs(5));
            List<Generation.TokenEvent> events = drain(g);
            assertEquals(8, events.size());
            assertEquals((float) (first[greedy[0]] - lse), events.get(0).logprob(), "the first token's log-probability");
            for (Generation.TokenEvent e : events) {
                assertEquals(5, e.top().size());
                assertEquals(e.id(), e.top().get(0).id(), "greedy takes the most likely id");
                assertEquals(e.logprob(), e.top().get(0).logprob());
                for (int j = 1; j < 5; j++) {
                    assertTrue(e.top().get(j).logprob() <= e.top().get(j - 1).logprob() && e.top().get(j).logprob() <= 0f, e.top().toString());
                }
            }
        }
        try (Session s = engine.newSession(128)) {
            Generation g = s.submit(GenerateRequest.of(prompt, 1).withIgnoreEos(true));
            Generation.TokenEvent e = g.next();
            g.await(); // the end read: the session is free again
            assertTrue(Float.isNaN(e.logprob()) && e.top().isEmpty(), "no log-probabilities unless asked");
        }
    }

    @Test
    void closingASessionCancelsItsRunningGenerationAndFreesItsPages() {
        int free = engine.kvPool().freePages();
        Session s = engine.newSession(512);
        Generation g = s.submit(GenerateRequest.of(prompt, 400).withIgnoreEos(true).withSampling(new SamplingParams(1.0f, 0, 1f, 3)));
        g.next();
        s.close(); // the end was not read: close cancels the generation instead of refusing
        assertEquals(FinishReason.CANCELLED, g.completion().finishReason());
        assertTrue(g.completion().usage().generatedTokens() < 400, g.completion().usage().toString());
        assertEquals(free, engine.kvPool().freePages(), "the session's pages are back in the pool");
    }

    @Test
    void aSlowReaderHoldsBackOnlyItsOwnSession() throws Exception {
        try (Session slow = engine.newSession(); Session fast = engine.newSession()) {
            Generation unread = slow.submit(GenerateRequest.of(prompt, 300).withIgnoreEos(true));
            // nobody reads `unread`: the scheduler generates up to the bound, then leaves it out of its steps
            Generation.Completion other = fast.submit(GenerateRequest.of(prompt, 200).withIgnoreEos(true)).await();
            assertEquals(200, other.usage().generatedTokens(), "the other session ran to its end meanwhile");
            Thread.sleep(200);
            int ahead = slow.length() - prompt.length;
            assertTrue(ahead <= 64 + 1, "the unread session generated " + ahead + " tokens ahead of its reader (bound 64)");
            Generation.Completion c = unread.await(); // reading resumes it
            assertEquals(300, c.usage().generatedTokens());
            assertEquals(FinishReason.LENGTH, c.finishReason());
        }
    }
}
