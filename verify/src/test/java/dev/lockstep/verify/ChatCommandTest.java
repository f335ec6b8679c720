package dev.lockstep.verify;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lockstep.cli.LockstepCli;
import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code lockstep chat}: turns stream, the second turn prefills only what the conversation added (the rest of its
 * prompt is the session's KV from turn one), {@code /save} writes the conversation, {@code /reset} starts over; a model
 * without a chat template is refused before loading, naming the way out.
 */
class ChatCommandTest {
    private static CliTest.Run chat(String stdin, String... args) {
        InputStream before = System.in;
        System.setIn(new ByteArrayInputStream(stdin.getBytes(StandardCharsets.UTF_8)));
        try {
            StringWriter out = new StringWriter(), err = new StringWriter();
            int code = LockstepCli.run(args, new PrintWriter(out), new PrintWriter(err));
            return new CliTest.Run(code, out.toString(), err.toString());
        } finally {
            System.setIn(before);
        }
    }

    @Test
    void turnsReuseTheConversationsKvAndSaveAndResetWork(@TempDir Path tmp) throws Exception {
        Path saved = tmp.resolve("conversation.json");
        CliTest.Run r = chat("In the beginning\nAnd God said\n/save " + saved + "\n/reset\nAnd God said\n/quit\n",
                "chat", "--model", Golden.bundledModel().toString(), "--chat-template", "plain", "--temp", "0", "-n", "12", "--threads", "1");
        assertEquals(0, r.code(), r.err());
        Matcher m = Pattern.compile("\\((\\d+) new prompt tokens, (\\d+) reused from the conversation; (\\d+) generated").matcher(r.err());
        int[][] turns = new int[3][];
        for (int i = 0; i < 3; i++) {
            assertTrue(m.find(), r.err());
            turns[i] = new int[] {Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)), Integer.parseInt(m.group(3))};
        }
        assertEquals(0, turns[0][1], "turn 1 starts from an empty session");
        assertTrue(turns[1][1] > turns[0][0], "turn 2 reuses turn 1's prompt and reply: " + r.err());
        assertEquals(0, turns[2][1], "after /reset nothing is reused: " + r.err());
        JsonNode messages = new ObjectMapper().readTree(saved.toFile()).get("messages");
        assertEquals(4, messages.size());
        assertEquals("And God said", messages.get(2).get("content").asText());
        assertTrue(r.out().contains("(conversation reset)"), r.out());
    }

    @Test
    void aModelWithoutAChatTemplateIsRefusedNamingTheWayOut() {
        CliTest.Run r = chat("hello\n", "chat", "--model", Golden.bundledModel().toString());
        assertEquals(LockstepCli.EXIT_USER_ERROR, r.code(), r.err());
        assertTrue(r.err().contains("has no chat template") && r.err().contains("--chat-template plain"), r.err());
    }
}
