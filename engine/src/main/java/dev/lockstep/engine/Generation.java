package dev.lockstep.engine;

import java.util.Arrays;

/**
 * A running generation ({@link Session#submit}): a stream of token events read with {@link #next()}, a
 * {@link #cancel()} that any thread may call (the request ends at the scheduler's next step), and its
 * {@link Completion} (the text, why it ended, usage). Text pieces never split a UTF-8 character and never contain
 * a stop string (text that may start one is held back until decided).
 *
 * <p>The session is busy until the end has been read: {@link #next()} returned null or {@link #await()} returned.
 * One consumer thread at a time reads the events; {@link #cancel()} is safe from any thread.
 */
public final class Generation {
    /**
     * One generated token and the text it completed (empty while a character or a possible stop string is pending),
     * with its log-probability and the most likely alternatives when the request asked for them (else NaN and empty).
     */
    public record TokenEvent(int id, String text, float logprob, java.util.List<TopLogprob> top) {
        public TokenEvent(int id, String text) {
            this(id, text, Float.NaN, java.util.List.of());
        }
    }

    /** A candidate token and its log-probability under the model's distribution. */
    public record TopLogprob(int id, float logprob) {
    }

    /**
     * Tokens and time: prompt tokens appended, how many of them were not computed (their KV came from the prefix cache:
     * whole 16-token pages), tokens generated, time to the first token, decode time, and when each delivered token was
     * sampled (nanoseconds from {@link Session#submit}; the gaps are the per-token latencies).
     */
    public record Usage(int promptTokens, int cachedTokens, int generatedTokens, long timeToFirstTokenNanos, long decodeNanos,
                        long[] tokenTimesNanos) {
        @Override
        public long[] tokenTimesNanos() {
            return tokenTimesNanos.clone();
        }

        @Override
        public String toString() {
            return "Usage[promptTokens=" + promptTokens + ", cachedTokens=" + cachedTokens + ", generatedTokens=" + generatedTokens
                    + ", timeToFirstTokenNanos=" + timeToFirstTokenNanos + ", decodeNanos=" + decodeNanos + ", tokenTimes=" + tokenTimesNanos.length + "]";
        }
    }

    /** The outcome: the text delivered, the generated ids, why it ended, usage, and the failure when it is {@link FinishReason#ERROR}. */
    public record Completion(String text, int[] tokens, FinishReason finishReason, Usage usage, RuntimeException error) {
        @Override
        public int[] tokens() {
            return tokens.clone();
        }
    }

    private final Session session;
    private final Scheduler.Request request;
    private final StreamingDecoder decoder;
    private final StopStrings stops;
    private final int promptTokens;
    private final int contextBefore;
    private final long startNanos;
    private final StringBuilder text = new StringBuilder();
    private int[] tokens = new int[16];
    private int tokenCount;
    private volatile boolean userCancelled;
    private boolean stoppedByString;
    private boolean finished;
    private int consumed; // token ids read from the request (delivered or not)
    private Completion completion;
    private String tail; // the decoder's and the stop matcher's last text, delivered as a final event

    Generation(Session session, Scheduler.Request request, StreamingDecoder decoder, StopStrings stops, int promptTokens,
               int contextBefore, long startNanos) {
        this.session = session;
        this.request = request;
        this.decoder = decoder;
        this.stops = stops;
        this.promptTokens = promptTokens;
        this.contextBefore = contextBefore;
        this.startNanos = startNanos;
    }

    /** Ends the generation at the scheduler's next step (finish reason {@link FinishReason#CANCELLED}); any thread. */
    public void cancel() {
        userCancelled = true;
        request.cancel();
    }

    /**
     * The next event, waiting for it; null once the generation has ended (then {@link #completion()} is set). The
     * last event may carry id -1: text held back until the end (an incomplete character, the start of a stop string
     * that never completed).
     */
    public synchronized TokenEvent next() {
        while (!finished) {
            if (tail != null) {
                String t = tail;
                tail = null;
                finish();
                if (!t.isEmpty()) {
                    return new TokenEvent(-1, t);
                }
                return null;
            }
            int id = request.next();
            int index = consumed++;
            if (id < 0) {
                tail = stops.push(decoder.flush()) + stops.flush();
                text.append(tail);
                continue;
            }
            if (stoppedByString) {
                continue; // tokens the scheduler produced before it saw the stop: not delivered
            }
            if (tokenCount == tokens.length) {
                tokens = Arrays.copyOf(tokens, 2 * tokenCount);
            }
            tokens[tokenCount++] = id;
            String piece = stops.push(decoder.push(id));
            text.append(piece);
            if (stops.stopped()) {
                stoppedByString = true;
                request.cancel();
            }
            return request.logprobs > 0 ? new TokenEvent(id, piece, request.logprob(index), request.top(index)) : new TokenEvent(id, piece);
        }
        return null;
    }

    /**
     * Whether {@link #next()} would return without waiting: a token is already generated, or the generation has ended.
     * A streaming consumer uses it to write what is ready in one go and flush once.
     */
    public boolean ready() {
        return finished || tail != null || request.ready();
    }

    /** Reads every remaining event and returns the completion. */
    public Completion await() {
        while (next() != null) {
            // drained
        }
        return completion();
    }

    /** The completion, or null while the generation runs. */
    public synchronized Completion completion() {
        return completion;
    }

    private void finish() {
        finished = true;
        RuntimeException error = null;
        try {
            request.rethrow();
        } catch (RuntimeException e) {
            error = e;
        } catch (Error e) {
            session.release();
            throw e;
        }
        if (error != null && !request.sawLogits) {
            session.rollbackTo(contextBefore); // the prompt never ran through: the session is as it was
        }
        FinishReason reason = error != null ? FinishReason.ERROR
                : stoppedByString || request.stoppedAtEos ? FinishReason.STOP
                : userCancelled ? FinishReason.CANCELLED
                : request.generated >= request.maxNewTokens ? FinishReason.LENGTH
                : FinishReason.CANCELLED;
        long firstToken = request.sawLogits ? request.firstLogitsNanos : request.finishedNanos();
        long[] times = request.emittedNanos(tokenCount);
        for (int i = 0; i < times.length; i++) {
            times[i] -= startNanos;
        }
        completion = new Completion(text.toString(), Arrays.copyOf(tokens, tokenCount), reason,
                new Usage(promptTokens, Math.max(0, Math.min(promptTokens, request.cachedTokens - contextBefore)), request.generated,
                        firstToken - startNanos, request.finishedNanos() - firstToken, times), error);
        session.release();
    }
}
