package dev.lockstep.chat;

import dev.lockstep.engine.Engine;
import dev.lockstep.engine.FinishReason;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.Generation;
import dev.lockstep.engine.Session;
import java.util.ArrayList;
import java.util.List;

/**
 * One reply generated in its own session and split into answer, reasoning and tool calls as it streams: what the
 * server's endpoints and the LangChain4j models share. The session is closed at the end (its full pages stay in the
 * prefix cache for the next request that shares the prefix); a listener that throws cancels the generation at the
 * next step (a client gone away) and {@link Aborted} carries the listener's exception and the partial result.
 */
public final class ChatRun {
    /**
     * Called for each token event with the deltas it completed (possibly none); {@code moreReady}: the next event is
     * already there (a streaming writer flushes only when it is not).
     */
    @FunctionalInterface
    public interface Listener {
        void accept(Generation.TokenEvent event, List<ChatDelta> deltas, boolean moreReady) throws Exception;
    }

    /** The reply: answer text, reasoning, tool calls, why it ended, usage, and the engine's failure if it failed. */
    public record Result(String text, String reasoning, List<ChatDelta.ToolCall> toolCalls, FinishReason finishReason,
                         Generation.Usage usage, RuntimeException error) {
        public Result {
            toolCalls = List.copyOf(toolCalls);
        }
    }

    /** The listener failed (a client gone away): the generation was cancelled; {@link #partial} is what it had produced. */
    public static final class Aborted extends Exception {
        private static final long serialVersionUID = 1L;
        private final transient Result partial;

        Aborted(Result partial, Exception cause) {
            super(cause);
            this.partial = partial;
        }

        public Result partial() {
            return partial;
        }
    }

    private ChatRun() {
    }

    /**
     * Runs {@code request} in a new session of {@code engine}; {@code parser} null delivers every piece as answer text
     * (plain completions). {@code listener} may be null.
     */
    public static Result run(Engine engine, GenerateRequest request, OutputParser parser, Listener listener) throws Aborted {
        StringBuilder text = new StringBuilder();
        StringBuilder reasoning = new StringBuilder();
        List<ChatDelta.ToolCall> calls = new ArrayList<>();
        try (Session s = engine.newSession()) {
            Generation gen = s.submit(request);
            try {
                Generation.TokenEvent ev;
                while ((ev = gen.next()) != null) {
                    List<ChatDelta> deltas = parser != null ? parser.push(ev.text()) : List.of(new ChatDelta.Content(ev.text()));
                    collect(deltas, text, reasoning, calls);
                    if (listener != null) {
                        listener.accept(ev, deltas, gen.ready());
                    }
                }
                if (parser != null) {
                    List<ChatDelta> deltas = parser.finish();
                    collect(deltas, text, reasoning, calls);
                    if (listener != null && !deltas.isEmpty()) {
                        listener.accept(null, deltas, false);
                    }
                }
            } catch (Exception e) {
                gen.cancel();
                Generation.Completion c = gen.await();
                throw new Aborted(new Result(text.toString(), reasoning.toString(), calls, FinishReason.CANCELLED, c.usage(), null), e);
            } catch (Error e) {
                gen.cancel();
                gen.await();
                throw e;
            }
            Generation.Completion c = gen.completion();
            return new Result(text.toString(), reasoning.toString(), calls, c.finishReason(), c.usage(), c.error());
        }
    }

    private static void collect(List<ChatDelta> deltas, StringBuilder text, StringBuilder reasoning, List<ChatDelta.ToolCall> calls) {
        for (ChatDelta d : deltas) {
            switch (d) {
                case ChatDelta.Content c -> text.append(c.text());
                case ChatDelta.Reasoning r -> reasoning.append(r.text());
                case ChatDelta.ToolCall t -> calls.add(t);
                case ChatDelta.ToolCallStart t -> {
                    // streamed calls are collected whole, from their ToolCall
                }
                case ChatDelta.ToolCallArguments t -> {
                    // idem
                }
            }
        }
    }
}
