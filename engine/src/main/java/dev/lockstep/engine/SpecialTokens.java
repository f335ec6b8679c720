package dev.lockstep.engine;

import com.fasterxml.jackson.databind.JsonNode;
import dev.lockstep.memory.Json;
import dev.lockstep.moe.ConfigException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.OptionalInt;
import java.util.TreeSet;

/**
 * A model's special tokens as its files declare them: whether encoding starts with BOS ({@code add_bos_token} in
 * tokenizer_config.json) and which id that is ({@code bos_token} by name, else {@code bos_token_id} in config.json);
 * the end-of-sequence <em>set</em> (every id of {@code eos_token_id} in generation_config.json and config.json, each
 * an int or a list: Qwen3 ends on two tokens, gpt-oss on three); and every special token by name
 * ({@code added_tokens} of tokenizer.json). Ids outside the vocabulary are errors naming the file.
 */
public record SpecialTokens(OptionalInt bos, boolean addBos, int[] eos, Map<String, Integer> byName) {
    public SpecialTokens {
        eos = eos.clone();
        byName = Map.copyOf(byName);
    }

    /** No BOS, no EOS (a model directory without the files). */
    public static final SpecialTokens NONE = new SpecialTokens(OptionalInt.empty(), false, new int[0], Map.of());

    /** Whether {@code id} ends a generation. */
    public boolean isEos(int id) {
        for (int e : eos) {
            if (e == id) {
                return true;
            }
        }
        return false;
    }

    /** The id of special token {@code name} ({@code <|endoftext|>}, {@code <|im_end|>}), if the tokenizer has it. */
    public OptionalInt id(String name) {
        Integer id = byName.get(name);
        return id == null ? OptionalInt.empty() : OptionalInt.of(id);
    }

    @Override
    public int[] eos() {
        return eos.clone();
    }

    /** Reads tokenizer.json, tokenizer_config.json, generation_config.json and config.json of {@code modelDir}. */
    public static SpecialTokens read(Path modelDir, int vocabSize) {
        Map<String, Integer> byName = new HashMap<>();
        JsonNode tokenizer = json(modelDir.resolve("tokenizer.json"));
        if (tokenizer != null && tokenizer.path("added_tokens").isArray()) {
            for (JsonNode t : tokenizer.get("added_tokens")) {
                if (t.path("content").isTextual() && t.path("id").canConvertToInt()) {
                    byName.put(t.get("content").asText(), t.get("id").asInt());
                }
            }
        }
        Path tcFile = modelDir.resolve("tokenizer_config.json");
        JsonNode tc = json(tcFile);
        boolean addBos = false;
        OptionalInt bos = OptionalInt.empty();
        if (tc != null) {
            JsonNode add = tc.get("add_bos_token");
            if (add != null && !add.isNull()) {
                if (!add.isBoolean()) {
                    throw new ConfigException(tcFile + ": add_bos_token must be true or false, got " + add);
                }
                addBos = add.asBoolean();
            }
            String name = tokenName(tc.get("bos_token"));
            if (name != null) {
                Integer id = byName.get(name);
                if (id == null && addBos) {
                    throw new ConfigException(tcFile + ": bos_token '" + name + "' is not a token of tokenizer.json's added_tokens");
                }
                if (id != null) {
                    bos = OptionalInt.of(check(id, vocabSize, tcFile, "bos_token"));
                }
            }
        }
        Path configFile = modelDir.resolve("config.json");
        JsonNode config = json(configFile);
        if (bos.isEmpty() && config != null && config.path("bos_token_id").canConvertToInt()) {
            bos = OptionalInt.of(check(config.get("bos_token_id").asInt(), vocabSize, configFile, "bos_token_id"));
        }
        if (addBos && bos.isEmpty()) {
            throw new ConfigException(tcFile + ": add_bos_token is true but neither bos_token nor config.json's bos_token_id names a token");
        }
        TreeSet<Integer> eos = new TreeSet<>();
        Path generationFile = modelDir.resolve("generation_config.json");
        for (Path f : new Path[]{generationFile, configFile}) {
            JsonNode j = json(f);
            JsonNode e = j == null ? null : j.get("eos_token_id");
            if (e == null || e.isNull()) {
                continue;
            }
            for (JsonNode id : e.isArray() ? e : java.util.List.of(e)) {
                if (!id.isIntegralNumber() || !id.canConvertToInt()) {
                    throw new ConfigException(f + ": eos_token_id must be an integer or a list of integers, got " + e);
                }
                eos.add(check(id.asInt(), vocabSize, f, "eos_token_id " + id));
            }
        }
        return new SpecialTokens(bos, addBos, eos.stream().mapToInt(Integer::intValue).toArray(), byName);
    }

    private static int check(int id, int vocabSize, Path file, String what) {
        if (id < 0 || id >= vocabSize) {
            throw new ConfigException(file + ": " + what + " is outside the vocabulary [0, " + vocabSize + ")");
        }
        return id;
    }

    /** A token given as a string or as {@code {"content": ...}} (transformers' AddedToken), or null. */
    private static String tokenName(JsonNode n) {
        if (n == null || n.isNull()) {
            return null;
        }
        if (n.isTextual()) {
            return n.asText();
        }
        return n.path("content").isTextual() ? n.get("content").asText() : null;
    }

    private static JsonNode json(Path file) {
        if (!Files.isRegularFile(file)) {
            return null;
        }
        try {
            return Json.MAPPER.readTree(Files.readString(file));
        } catch (IOException e) {
            throw new ConfigException(file + ": not valid JSON (" + e.getMessage() + ")", e);
        }
    }

    @Override
    public String toString() {
        return "bos " + (bos.isPresent() ? bos.getAsInt() : "none") + (addBos ? " (added)" : "") + ", eos " + Arrays.toString(eos);
    }
}
