package dev.lockstep.verify;

import dev.lockstep.engine.StreamingDecoder;
import dev.lockstep.engine.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class TokenizerTest {
    static Tokenizer tokenizer;

    @BeforeAll
    static void load() {
        tokenizer = Tokenizer.load(Golden.bundledModel(), 4096);
    }

    @AfterAll
    static void close() {
        tokenizer.close();
    }

    @Test
    void encodesTheGoldenPromptWithoutBos() {
        int[] expected = Golden.intArray(Golden.json("golden.json").get("prompts").get("p0"));
        assertArrayEquals(expected, tokenizer.encode("In the beginning God created"));
    }

    @Test
    void decodeInvertsEncode() {
        String text = "And God said, Let there be light: and there was light.\n";
        assertEquals(text, tokenizer.decode(tokenizer.encode(text)));
    }

    @Test
    void longInputIsNotTruncated() {
        String text = "And it was so. ".repeat(2000);
        int[] ids = tokenizer.encode(text);
        assertTrue(ids.length > 4000, "got " + ids.length + " tokens");
        assertEquals(text, tokenizer.decode(ids));
    }

    @Test
    void streamingNeverSplitsACharacter() {
        // Byte-level BPE over a KJV vocabulary: these characters are split into several byte tokens.
        String text = "Jehovah — “the LORD” ✓ 日本語 👍 é.";
        int[] ids = tokenizer.encode(text);
        assertTrue(ids.length > text.length() / 2, "multibyte characters should take several tokens each");
        StreamingDecoder decoder = tokenizer.streamingDecoder();
        StringBuilder out = new StringBuilder();
        for (int id : ids) {
            String piece = decoder.push(id);
            assertFalse(piece.contains("\uFFFD"), "piece with a broken character: " + piece);
            out.append(piece);
        }
        out.append(decoder.flush());
        assertEquals(text, out.toString());
    }

    @Test
    void goldenGreedyTokensDecodeIncrementallyToTheSameText() {
        int[] ids = Golden.intArray(Golden.json("golden.json").get("greedy").get("p1"));
        StreamingDecoder decoder = tokenizer.streamingDecoder();
        StringBuilder out = new StringBuilder();
        for (int id : ids) {
            out.append(decoder.push(id));
        }
        out.append(decoder.flush());
        assertEquals(tokenizer.decode(ids), out.toString());
    }
}
