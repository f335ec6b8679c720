package dev.lockstep.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.lockstep.chat.ChatDelta;
import dev.lockstep.chat.ChatFormat;
import dev.lockstep.chat.OutputParser;
import dev.lockstep.engine.Engine;
import dev.lockstep.engine.EngineOptions;
import dev.lockstep.engine.GenerateRequest;
import dev.lockstep.engine.Generation;
import dev.lockstep.engine.SamplingParams;
import dev.lockstep.engine.Session;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * An interactive chat in the terminal. The conversation's KV stays in one session between turns: each turn renders the
 * whole conversation with the chat template, keeps the session's tokens that the new rendering shares with it
 * (rolling back any the template renders differently now, e.g. a reply's end marker), and prefills only the rest.
 */
@Command(name = "chat", mixinStandardHelpOptions = true,
        description = "Chat in the terminal (streams; keeps the conversation's KV between turns). Commands: /reset, /save FILE, /quit.")
final class ChatCommand extends LoadingCommand implements java.util.concurrent.Callable<Integer> {
    @Option(names = "--system", paramLabel = "TEXT", description = "A system message at the start of the conversation.")
    String system;

    @Option(names = "--chat-template", paramLabel = "FILE|plain",
            description = "Chat template: a .jinja file, or 'plain' ('role: content' lines). Default: the model's own.")
    String chatTemplate;

    @Option(names = "--threads", paramLabel = "N", description = "Compute threads (default: available processors).")
    Integer threads;

    @Option(names = "-n", paramLabel = "N", defaultValue = "512", description = "Most tokens per reply (default: ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--temp", paramLabel = "T", defaultValue = "0.7", description = "Temperature; 0 = greedy (default: ${DEFAULT-VALUE}).")
    float temperature;

    @Option(names = "--seed", paramLabel = "S", defaultValue = "42", description = "Sampling seed (default: ${DEFAULT-VALUE}).")
    long seed;

    @Override
    public Integer call() throws IOException {
        ChatFormat format = ChatFormat.load(model, chatTemplate); // before loading: a model without a template fails fast
        int t = threads != null ? threads : defaultThreads();
        PrintWriter out = out();
        List<Map<String, Object>> messages = new ArrayList<>();
        if (system != null) {
            messages.add(message("system", system));
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (Engine engine = loadEngine(new EngineOptions(t, EngineOptions.KernelChoice.PROVIDER, loadOptions()))) {
            Session session = engine.newSession();
            try {
                out.print("> ");
                out.flush();
                String line;
                while ((line = in.readLine()) != null) {
                    if (line.equals("/quit") || line.equals("/exit")) {
                        break;
                    } else if (line.equals("/reset")) {
                        session.close();
                        session = engine.newSession();
                        messages.removeIf(m -> !"system".equals(m.get("role")));
                        out.println("(conversation reset)");
                    } else if (line.startsWith("/save ")) {
                        Path file = Path.of(line.substring("/save ".length()).strip());
                        new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(file.toFile(), Map.of("messages", messages));
                        out.println("(saved " + messages.size() + " messages to " + file + ")");
                    } else if (!line.isBlank()) {
                        messages.add(message("user", line));
                        String reply = turn(engine, session, format, messages, out);
                        // stored stripped, as chat clients store replies: the template puts back the separator the
                        // model wrote (a leading space after "assistant:"), so the next turn's tokens match the KV
                        messages.add(message("assistant", reply.strip()));
                    }
                    out.print("> ");
                    out.flush();
                }
            } finally {
                session.close();
            }
        }
        out.println();
        return 0;
    }

    private String turn(Engine engine, Session session, ChatFormat format, List<Map<String, Object>> messages, PrintWriter out) {
        String prompt = format.render(messages, null, true, Map.of());
        int[] all = engine.tokenizer().encode(prompt);
        int[] have = session.tokens();
        int common = 0;
        while (common < have.length && common < all.length - 1 && have[common] == all[common]) {
            common++;
        }
        session.rollback(have.length - common);
        int[] fresh = java.util.Arrays.copyOfRange(all, common, all.length);
        int room = session.capacity() - session.length() - fresh.length;
        if (room < 1) {
            throw new IllegalArgumentException("the conversation fills the model's context (" + session.capacity() + " tokens); /reset starts over");
        }
        GenerateRequest g = GenerateRequest.of(fresh, Math.min(maxTokens, room))
                .withSampling(new SamplingParams(temperature, 0, 1f, seed + messages.size()));
        OutputParser parser = format.parser(prompt, "call_");
        StringBuilder reply = new StringBuilder();
        Generation gen = session.submit(g);
        Generation.TokenEvent ev;
        while ((ev = gen.next()) != null) {
            print(parser.push(ev.text()), reply, out);
        }
        print(parser.finish(), reply, out);
        Generation.Completion c = gen.completion();
        out.println();
        err().printf("(%d new prompt tokens, %d reused from the conversation; %d generated; %s)%n", fresh.length, common,
                c.usage().generatedTokens(), c.finishReason().name().toLowerCase(java.util.Locale.ROOT));
        err().flush();
        if (c.error() != null) {
            throw c.error();
        }
        return reply.toString();
    }

    private static void print(List<ChatDelta> deltas, StringBuilder reply, PrintWriter out) {
        for (ChatDelta d : deltas) {
            switch (d) {
                case ChatDelta.Content c -> {
                    reply.append(c.text());
                    out.print(c.text());
                }
                case ChatDelta.Reasoning r -> out.print(r.text());
                case ChatDelta.ToolCall call -> out.print("[tool call " + call.name() + " " + call.arguments() + "]");
                case ChatDelta.ToolCallStart start -> {
                    // printed whole, from the ToolCall
                }
                case ChatDelta.ToolCallArguments args -> {
                    // idem
                }
            }
        }
        out.flush();
    }

    private static Map<String, Object> message(String role, String content) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("role", role);
        m.put("content", content);
        return m;
    }
}
