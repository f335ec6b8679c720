package dev.lockstep.verify;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lockstep.engine.Tokenizer;
import dev.lockstep.memory.LockstepException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * tokenizer.json is validated in Java before the native tokenizers library sees it (some malformed files
 * abort the JVM inside it). Every component type on the accepted list loads and runs here; everything else,
 * and every corruption, is one {@link LockstepException} naming the file and the field. If a case slipped
 * through to the native library and made it panic, this test JVM would die and the build would fail.
 */
class TokenizerValidationTest {
    static final ObjectMapper JSON = new ObjectMapper();
    static final int VOCAB = 4096;

    @TempDir
    Path tmp;

    static ObjectNode bundled() {
        try {
            return (ObjectNode) JSON.readTree(Golden.bundledModel().resolve("tokenizer.json").toFile());
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    Path write(String json) throws IOException {
        Path dir = Files.createTempDirectory(tmp, "tok");
        Files.writeString(dir.resolve("tokenizer.json"), json);
        return dir;
    }

    Tokenizer load(JsonNode json) throws IOException {
        return Tokenizer.load(write(json.toString()), VOCAB);
    }

    LockstepException refused(JsonNode json, String... fragments) throws IOException {
        return refused(json.toString(), fragments);
    }

    LockstepException refused(String json, String... fragments) throws IOException {
        Path dir = write(json);
        LockstepException e = assertThrows(LockstepException.class, () -> Tokenizer.load(dir, VOCAB).close());
        assertTrue(e.getMessage().contains("tokenizer.json"), e.getMessage());
        for (String f : fragments) {
            assertTrue(e.getMessage().contains(f), "expected '" + f + "' in: " + e.getMessage());
        }
        return e;
    }

    static JsonNode parse(String json) {
        try {
            return JSON.readTree(json);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    // ---- accepted components: each loads and runs ----

    static Stream<String[]> acceptedComponents() {
        return Stream.of(
                new String[]{"normalizer", "null"},
                new String[]{"normalizer", "{\"type\":\"NFC\"}"},
                new String[]{"normalizer", "{\"type\":\"NFD\"}"},
                new String[]{"normalizer", "{\"type\":\"NFKC\"}"},
                new String[]{"normalizer", "{\"type\":\"NFKD\"}"},
                new String[]{"normalizer", "{\"type\":\"Lowercase\"}"},
                new String[]{"normalizer", "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":false}"},
                new String[]{"normalizer", "{\"type\":\"Prepend\",\"prepend\":\"\u2581\"}"},
                new String[]{"normalizer", "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\u2581\"}"},
                new String[]{"normalizer", "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Lowercase\"}]}"},
                new String[]{"pre_tokenizer", "null"},
                new String[]{"pre_tokenizer", "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":true}"},
                new String[]{"pre_tokenizer", "{\"type\":\"Whitespace\"}"},
                new String[]{"pre_tokenizer", "{\"type\":\"WhitespaceSplit\"}"},
                new String[]{"pre_tokenizer", "{\"type\":\"Digits\",\"individual_digits\":true}"},
                new String[]{"pre_tokenizer", "{\"type\":\"Punctuation\",\"behavior\":\"Isolated\"}"},
                new String[]{"pre_tokenizer", "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"first\",\"split\":true}"},
                new String[]{"pre_tokenizer", "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"add_prefix_space\":true}"},
                new String[]{"pre_tokenizer", "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\p{L}+|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false}"},
                new String[]{"pre_tokenizer", "{\"type\":\"Split\",\"pattern\":{\"String\":\",\"},\"behavior\":\"MergedWithPrevious\",\"invert\":false}"},
                // Qwen2/Qwen3's real pre-tokenizer: a GPT-4-style split, then byte-level without its own regex.
                new String[]{"pre_tokenizer", "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
                        + "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},"
                        + "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]}"},
                new String[]{"decoder", "null"},
                new String[]{"decoder", "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true}"},
                new String[]{"decoder", "{\"type\":\"Metaspace\",\"replacement\":\"\u2581\",\"prepend_scheme\":\"always\",\"split\":true}"},
                new String[]{"decoder", "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\u2581\"},\"content\":\" \"},"
                        + "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}"},
                new String[]{"post_processor", "null"},
                new String[]{"post_processor", "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":false,\"use_regex\":true}"},
                new String[]{"post_processor", "{\"type\":\"TemplateProcessing\",\"single\":[],\"pair\":[],\"special_tokens\":{}}"});
    }

    @ParameterizedTest(name = "{0} = {1}")
    @MethodSource("acceptedComponents")
    void acceptedComponentLoadsAndRuns(String field, String component) throws IOException {
        ObjectNode json = bundled();
        json.set(field, parse(component));
        try (Tokenizer t = load(json)) {
            int[] ids = t.encode("In the beginning God created the heaven and the earth, 3 times.");
            assertTrue(ids.length > 0, component);
            for (int id : ids) {
                assertTrue(id >= 0 && id < VOCAB, "id " + id);
            }
            t.decode(ids);
        }
    }

    @Test
    void canonicalFormKeepsTheBundledTokenization() throws IOException {
        try (Tokenizer t = Tokenizer.load(Golden.bundledModel(), VOCAB)) {
            int[] expected = Golden.intArray(Golden.json("golden.json").get("prompts").get("p0"));
            assertArrayEquals(expected, t.encode("In the beginning God created"));
        }
    }

    @Test
    void legacyAndPairMergesTokenizeAlike() throws IOException {
        ObjectNode legacyJson = bundled();
        ArrayNode merges = (ArrayNode) legacyJson.get("model").get("merges");
        for (int i = 0; i < merges.size(); i++) {
            merges.set(i, JSON.getNodeFactory().textNode(merges.get(i).get(0).asText() + " " + merges.get(i).get(1).asText()));
        }
        String text = "And God said, Let there be light: and there was light.";
        try (Tokenizer pair = Tokenizer.load(Golden.bundledModel(), VOCAB); Tokenizer legacy = load(legacyJson)) {
            assertArrayEquals(legacy.encode(text), pair.encode(text));
        }
    }

    // ---- refused: one clear error each ----

    @Test
    void truncatedFilesAreRefusedBeforeTheNativeLibrary() throws IOException {
        String full = bundled().toString();
        int decoder = full.indexOf("\"decoder\"");
        // The case that aborted the JVM: truncated inside "decoder"; then a spread of other cut points.
        List<Integer> cuts = new ArrayList<>(List.of(decoder + 30, 0, 1, 2, full.length() - 1));
        for (int c = 97; c < full.length(); c += full.length() / 40) {
            cuts.add(c);
        }
        for (int cut : cuts) {
            refused(full.substring(0, cut), "not valid JSON");
        }
    }

    @Test
    void precompiledNormalizerIsRefused() throws IOException {
        ObjectNode json = bundled();
        json.set("normalizer", parse("{\"type\":\"Precompiled\"}"));
        refused(json, "normalizer.type", "Precompiled", "not supported");
        json.set("normalizer", parse("{\"type\":\"Precompiled\",\"precompiled_charsmap\":\"AAAA\"}"));
        refused(json, "Precompiled");
        json.set("normalizer", parse("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Precompiled\"}]}"));
        refused(json, "normalizer.normalizers[0].type");
    }

    @Test
    void bpeDropoutIsRefused() throws IOException {
        ObjectNode json = bundled();
        ((ObjectNode) json.get("model")).put("dropout", 0.1);
        refused(json, "model.dropout", "random");
    }

    @Test
    void idsOutsideTheModelVocabularyAreLoadErrors() throws IOException {
        ObjectNode json = bundled();
        ((ObjectNode) json.get("added_tokens").get(0)).put("id", VOCAB);
        refused(json, "added_tokens[0].id", "outside the model's vocabulary [0, 4096)");

        json = bundled();
        ((ObjectNode) json.get("model").get("vocab")).put("\u0120the", 5000);
        refused(json, "model.vocab", "5000", "outside");

        json = bundled();
        ((ObjectNode) json.get("model").get("vocab")).put("\u0120the", -1);
        refused(json, "-1", "outside");

        // The same file is fine for a model with a larger vocabulary.
        Path dir = write(bundled().toString());
        Tokenizer.load(dir, VOCAB).close();
        LockstepException e = assertThrows(LockstepException.class, () -> Tokenizer.load(dir, 100));
        assertTrue(e.getMessage().contains("[0, 100)"), e.getMessage());
    }

    @Test
    void structuralErrorsNameTheField() throws IOException {
        ObjectNode json = bundled();
        json.put("extra", 1);
        refused(json, "extra", "not a field");

        json = bundled();
        ((ObjectNode) json.get("model")).put("type", "WordPiece");
        refused(json, "model.type", "WordPiece");

        json = bundled();
        ((ObjectNode) json.get("decoder")).put("type", "CTC");
        refused(json, "decoder.type", "CTC");

        json = bundled();
        ((ObjectNode) json.get("pre_tokenizer")).put("add_prefix_space", "yes");
        refused(json, "pre_tokenizer.add_prefix_space", "true or false");

        json = bundled();
        ((ArrayNode) json.get("model").get("merges")).set(0, JSON.createArrayNode().add("zzzq").add("yyyq"));
        refused(json, "model.merges[0]", "not in the vocabulary");

        json = bundled();
        ((ArrayNode) json.get("model").get("merges")).set(0, JSON.getNodeFactory().textNode("abc"));
        refused(json, "model.merges[0]", "two tokens");

        json = bundled();
        json.set("truncation", parse("{\"max_length\":8}"));
        refused(json, "truncation", "never truncates");

        json = bundled();
        json.set("pre_tokenizer", parse("{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(unclosed\"},\"behavior\":\"Isolated\",\"invert\":false}"));
        // A bad regex is an error the native library reports (not a panic): it becomes our one-line error too.
        refused(json, "cannot load tokenizer");

        json = bundled();
        ((ObjectNode) json.get("model")).remove("vocab");
        refused(json, "model.vocab", "missing");

        refused("[1, 2]", "must be a JSON object");
        refused("{\"model\": {}} trailing", "not valid JSON");
        refused("{\"model\": {\"type\":\"BPE\",\"vocab\":{\"a\":0},\"vocab\":{\"b\":1}}}", "not valid JSON", "Duplicate");
    }

    @Test
    void closedTokenizerFailsCleanly() throws IOException {
        Tokenizer t = Tokenizer.load(Golden.bundledModel(), VOCAB);
        t.close();
        t.close();
        assertThrows(IllegalStateException.class, () -> t.encode("x"));
        assertThrows(IllegalStateException.class, () -> t.decode(new int[]{1}));
    }

    /**
     * Seeded structural fuzzing: random deletions, type swaps and value changes anywhere in the tree, plus
     * random truncations. Each mutant either loads (and then encodes) or is refused with a LockstepException;
     * anything else (another exception type, or a native abort that kills this JVM) fails the build.
     */
    @Test
    void fuzzedTokenizerFilesNeverEscapeTheDocumentedErrors() throws IOException {
        int rounds = Integer.getInteger("lockstep.fuzz.tokenizer", Boolean.getBoolean("lockstep.stress") ? 3000 : 300);
        SplittableRandom random = new SplittableRandom(20261129);
        int loaded = 0, refusedCount = 0;
        String full = bundled().toString();
        for (int round = 0; round < rounds; round++) {
            String text;
            if (random.nextInt(4) == 0) {
                text = full.substring(0, random.nextInt(full.length()));
            } else {
                ObjectNode json = bundled();
                for (int m = 1 + random.nextInt(3); m > 0; m--) {
                    Mutations.mutate(json, random);
                }
                text = json.toString();
            }
            Path dir = write(text);
            try (Tokenizer t = Tokenizer.load(dir, VOCAB)) {
                t.decode(t.encode("In the beginning, 12 days."));
                loaded++;
            } catch (LockstepException e) {
                assertTrue(e.getMessage().contains("tokenizer.json"), e.getMessage());
                refusedCount++;
            }
            Files.delete(dir.resolve("tokenizer.json"));
        }
        assertEquals(rounds, loaded + refusedCount);
        assertTrue(refusedCount > rounds / 4, "most mutants are refused: " + refusedCount + " of " + rounds);
    }

    @Test
    void nonUtf8FileIsRefused() throws IOException {
        byte[] bytes = bundled().toString().getBytes(StandardCharsets.UTF_8);
        bytes[10] = (byte) 0xff;
        Path dir = Files.createTempDirectory(tmp, "tok");
        Files.write(dir.resolve("tokenizer.json"), bytes);
        LockstepException e = assertThrows(LockstepException.class, () -> Tokenizer.load(dir, VOCAB));
        assertTrue(e.getMessage().contains("not valid JSON"), e.getMessage());
    }
}
