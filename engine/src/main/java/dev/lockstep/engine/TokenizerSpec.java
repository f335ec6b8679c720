package dev.lockstep.engine;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lockstep.memory.LockstepException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Iterator;
import java.util.Map;
import java.util.Set;

/**
 * A {@code tokenizer.json} checked in Java before any of it reaches the native tokenizers library, and
 * rewritten into a canonical form that holds only what was checked.
 *
 * <p>Why: the native library aborts the whole JVM (a Rust panic across JNI, exit 134) on some inputs — a
 * file truncated inside {@code "decoder"}, a {@code Precompiled} normalizer without its data — and no Java
 * handler can catch that. So nothing goes to it that this class has not accepted: the JSON must be complete,
 * every component must be of a type on the list below with exactly the fields that type takes (each list
 * entry is covered by a test that loads and runs it), and the library receives the JSON re-serialized from
 * the validated tree, never the file's bytes.
 *
 * <ul>
 *   <li>model: {@code BPE} only, without dropout (dropout makes tokenization random). Every vocabulary id,
 *       added-token id and {@code unk_token} must lie in the model's vocabulary {@code [0, vocab_size)}; every
 *       merge must join two vocabulary tokens into a vocabulary token.</li>
 *   <li>normalizer: none, {@code NFC NFD NFKC NFKD Lowercase Strip Prepend Replace} (string pattern), {@code Sequence}.</li>
 *   <li>pre_tokenizer: none, {@code ByteLevel Split Metaspace Whitespace WhitespaceSplit Digits Punctuation Sequence}.</li>
 *   <li>decoder: none, {@code ByteLevel Metaspace ByteFallback Fuse Strip Replace} (string pattern), {@code Sequence}.</li>
 *   <li>post_processor: validated, then dropped: Lockstep encodes without special tokens, where a post-processor
 *       changes no id (it adds template tokens or adjusts offsets only).</li>
 *   <li>truncation and padding must be null: Lockstep never truncates or pads a prompt.</li>
 * </ul>
 */
final class TokenizerSpec {
    private static final ObjectMapper JSON = dev.lockstep.memory.Json.MAPPER;
    /** Nesting depth of Sequence components accepted (real files use 1). */
    private static final int MAX_DEPTH = 4;

    private final Path file;
    private final int vocabSize;

    private TokenizerSpec(Path file, int vocabSize) {
        this.file = file;
        this.vocabSize = vocabSize;
    }

    /** Reads, validates and canonicalizes {@code file}; {@code vocabSize} is the model's vocabulary size. */
    static String canonicalJson(Path file, int vocabSize) {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw new LockstepException(file + ": no such file (the model directory needs a tokenizer.json)");
        } catch (IOException e) {
            throw new LockstepException(file + ": cannot read (" + e.getMessage() + ")", e);
        }
        JsonNode root;
        try {
            root = JSON.readTree(bytes);
        } catch (JsonProcessingException e) {
            String why = e.getOriginalMessage().replaceAll("\\s*\\(start marker at \\[Source: [^\\]]*\\][^)]*\\)", "");
            throw new LockstepException(file + ": not valid JSON (" + why + " at line "
                    + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr() + ")");
        } catch (IOException e) {
            throw new LockstepException(file + ": cannot read (" + e.getMessage() + ")", e);
        }
        if (root == null || root.isMissingNode()) {
            throw new LockstepException(file + ": not valid JSON (the file is empty)");
        }
        TokenizerSpec spec = new TokenizerSpec(file, vocabSize);
        return spec.canonical(root).toString();
    }

    private ObjectNode canonical(JsonNode root) {
        if (root == null || !root.isObject()) {
            throw bad("", "must be a JSON object");
        }
        allowOnly(root, "", "version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
                "post_processor", "decoder", "model");
        ObjectNode out = JsonNodeFactory.instance.objectNode();
        JsonNode version = root.get("version");
        if (version != null && !version.isNull() && !version.isTextual()) {
            throw bad("version", "must be a string");
        }
        out.put("version", "1.0");
        for (String k : new String[]{"truncation", "padding"}) {
            JsonNode n = root.get(k);
            if (n != null && !n.isNull()) {
                throw bad(k, "must be null: Lockstep never " + (k.equals("truncation") ? "truncates" : "pads") + " a prompt");
            }
            out.putNull(k);
        }
        out.set("model", model(required(root, "model", ""), "model"));
        out.set("added_tokens", addedTokens(root.get("added_tokens")));
        out.set("normalizer", normalizer(root.get("normalizer"), "normalizer", 0));
        out.set("pre_tokenizer", preTokenizer(root.get("pre_tokenizer"), "pre_tokenizer", 0));
        postProcessor(root.get("post_processor"), "post_processor", 0);
        out.putNull("post_processor");
        out.set("decoder", decoder(root.get("decoder"), "decoder", 0));
        return out;
    }

    // ---- model ----

    private JsonNode model(JsonNode m, String at) {
        requireObject(m, at);
        String type = m.has("type") ? text(m, "type", at) : "BPE";
        if (!type.equals("BPE")) {
            throw bad(at + ".type", "'" + type + "' is not supported (supported: BPE)");
        }
        allowOnly(m, at, "type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
                "byte_fallback", "ignore_merges", "vocab", "merges");
        JsonNode dropout = m.get("dropout");
        if (dropout != null && !dropout.isNull()) {
            throw bad(at + ".dropout", "is " + dropout + ": BPE dropout makes tokenization random; Lockstep refuses it (set it to null)");
        }
        ObjectNode out = JsonNodeFactory.instance.objectNode();
        out.put("type", "BPE");
        out.putNull("dropout");
        JsonNode vocabNode = required(m, "vocab", at);
        requireObject(vocabNode, at + ".vocab");
        if (vocabNode.isEmpty()) {
            throw bad(at + ".vocab", "is empty");
        }
        // Validated in place and then passed on as parsed (no copy): this runs on every load of a cold JVM, so the
        // loops allocate nothing per entry unless an entry is wrong (messages are built only then).
        Set<String> tokens = new HashSet<>(vocabNode.size() * 2);
        boolean[] idTaken = new boolean[vocabSize];
        for (Map.Entry<String, JsonNode> e : vocabNode.properties()) {
            JsonNode idNode = e.getValue();
            if (!idNode.isIntegralNumber() || !idNode.canConvertToInt() || idNode.asInt() < 0 || idNode.asInt() >= vocabSize) {
                tokenId(idNode, at + ".vocab['" + e.getKey() + "']"); // throws, naming the entry
            }
            int id = idNode.asInt();
            if (idTaken[id]) {
                throw bad(at + ".vocab['" + e.getKey() + "']", "id " + id + " is used by two tokens");
            }
            idTaken[id] = true;
            tokens.add(e.getKey());
        }
        out.set("vocab", vocabNode);
        JsonNode prefixNode = m.get("continuing_subword_prefix");
        String prefix = prefixNode == null || prefixNode.isNull() ? null : text(m, "continuing_subword_prefix", at);
        JsonNode merges = m.get("merges");
        if (merges != null && !merges.isNull()) {
            if (!merges.isArray()) {
                throw bad(at + ".merges", "must be a list");
            }
            for (int i = 0; i < merges.size(); i++) {
                JsonNode merge = merges.get(i);
                String a, b;
                if (merge.isTextual()) {
                    String text = merge.asText();
                    int space = text.indexOf(' ');
                    if (space < 0 || text.indexOf(' ', space + 1) >= 0) {
                        throw bad(at + ".merges[" + i + "]", "'" + text + "' must be two tokens separated by one space");
                    }
                    a = text.substring(0, space);
                    b = text.substring(space + 1);
                } else if (merge.isArray() && merge.size() == 2 && merge.get(0).isTextual() && merge.get(1).isTextual()) {
                    a = merge.get(0).asText();
                    b = merge.get(1).asText();
                } else {
                    throw bad(at + ".merges[" + i + "]", "must be \"a b\" or [\"a\", \"b\"], got " + merge);
                }
                // The merged token, as the library forms it: the continuing-subword prefix of b is dropped.
                String merged = prefix != null && b.startsWith(prefix) ? a + b.substring(prefix.length()) : a + b;
                String missing = !tokens.contains(a) ? a : !tokens.contains(b) ? b : !tokens.contains(merged) ? merged : null;
                if (missing != null) {
                    throw bad(at + ".merges[" + i + "]", "uses token '" + missing + "', which is not in the vocabulary");
                }
            }
            out.set("merges", merges);
        } else {
            out.putArray("merges");
        }
        JsonNode unk = m.get("unk_token");
        if (unk != null && !unk.isNull()) {
            String u = text(m, "unk_token", at);
            if (!tokens.contains(u)) {
                throw bad(at + ".unk_token", "'" + u + "' is not in the vocabulary");
            }
            out.put("unk_token", u);
        } else {
            out.putNull("unk_token");
        }
        for (String k : new String[]{"continuing_subword_prefix", "end_of_word_suffix"}) {
            JsonNode n = m.get(k);
            if (n == null || n.isNull()) {
                out.putNull(k);
            } else {
                out.put(k, text(m, k, at));
            }
        }
        out.put("fuse_unk", bool(m, "fuse_unk", at, false));
        out.put("byte_fallback", bool(m, "byte_fallback", at, false));
        out.put("ignore_merges", bool(m, "ignore_merges", at, false));
        return out;
    }

    private int tokenId(JsonNode n, String at) {
        if (!n.isIntegralNumber() || !n.canConvertToInt() || n.asInt() < 0 || n.asInt() >= vocabSize) {
            throw bad(at, "token id " + n + " is outside the model's vocabulary [0, " + vocabSize + ")");
        }
        return n.asInt();
    }

    private ArrayNode addedTokens(JsonNode list) {
        ArrayNode out = JsonNodeFactory.instance.arrayNode();
        if (list == null || list.isNull()) {
            return out;
        }
        if (!list.isArray()) {
            throw bad("added_tokens", "must be a list");
        }
        int i = 0;
        for (JsonNode t : list) {
            String at = "added_tokens[" + i++ + "]";
            requireObject(t, at);
            allowOnly(t, at, "id", "content", "single_word", "lstrip", "rstrip", "normalized", "special");
            ObjectNode o = out.addObject();
            o.put("id", tokenId(required(t, "id", at), at + ".id"));
            String content = text(t, "content", at);
            if (content.isEmpty()) {
                throw bad(at + ".content", "is empty");
            }
            o.put("content", content);
            for (String k : new String[]{"single_word", "lstrip", "rstrip", "normalized", "special"}) {
                o.put(k, bool(t, k, at, k.equals("normalized")));
            }
        }
        return out;
    }

    // ---- components ----

    private JsonNode normalizer(JsonNode n, String at, int depth) {
        if (n == null || n.isNull()) {
            return JsonNodeFactory.instance.nullNode();
        }
        String type = type(n, at, depth);
        ObjectNode out = typed(type);
        switch (type) {
            case "NFC", "NFD", "NFKC", "NFKD", "Lowercase" -> allowOnly(n, at, "type");
            case "Strip" -> {
                allowOnly(n, at, "type", "strip_left", "strip_right");
                out.put("strip_left", bool(n, "strip_left", at, true));
                out.put("strip_right", bool(n, "strip_right", at, true));
            }
            case "Prepend" -> {
                allowOnly(n, at, "type", "prepend");
                out.put("prepend", text(n, "prepend", at));
            }
            case "Replace" -> replace(n, at, out);
            case "Sequence" -> sequence(n, at, depth, "normalizers", out, this::normalizer);
            default -> throw unsupported(at, type, "NFC, NFD, NFKC, NFKD, Lowercase, Strip, Prepend, Replace, Sequence"
                    + (type.equals("Precompiled") ? "; Precompiled (a SentencePiece charsmap) is not supported" : ""));
        }
        return out;
    }

    private JsonNode preTokenizer(JsonNode n, String at, int depth) {
        if (n == null || n.isNull()) {
            return JsonNodeFactory.instance.nullNode();
        }
        String type = type(n, at, depth);
        ObjectNode out = typed(type);
        switch (type) {
            case "ByteLevel" -> byteLevel(n, at, out);
            case "Whitespace", "WhitespaceSplit" -> allowOnly(n, at, "type");
            case "Digits" -> {
                allowOnly(n, at, "type", "individual_digits");
                out.put("individual_digits", bool(n, "individual_digits", at, false));
            }
            case "Punctuation" -> {
                allowOnly(n, at, "type", "behavior");
                out.put("behavior", behavior(n, at, "Isolated"));
            }
            case "Metaspace" -> metaspace(n, at, out);
            case "Split" -> {
                allowOnly(n, at, "type", "pattern", "behavior", "invert");
                out.set("pattern", pattern(required(n, "pattern", at), at + ".pattern", true));
                out.put("behavior", behavior(n, at, null));
                out.put("invert", bool(n, "invert", at, false));
            }
            case "Sequence" -> sequence(n, at, depth, "pretokenizers", out, this::preTokenizer);
            default -> throw unsupported(at, type, "ByteLevel, Split, Metaspace, Whitespace, WhitespaceSplit, Digits, Punctuation, Sequence");
        }
        return out;
    }

    private JsonNode decoder(JsonNode n, String at, int depth) {
        if (n == null || n.isNull()) {
            return JsonNodeFactory.instance.nullNode();
        }
        String type = type(n, at, depth);
        ObjectNode out = typed(type);
        switch (type) {
            case "ByteLevel" -> byteLevel(n, at, out);
            case "ByteFallback", "Fuse" -> allowOnly(n, at, "type");
            case "Metaspace" -> metaspace(n, at, out);
            case "Replace" -> replace(n, at, out);
            case "Strip" -> {
                allowOnly(n, at, "type", "content", "start", "stop");
                String content = text(n, "content", at);
                if (content.codePointCount(0, content.length()) != 1) {
                    throw bad(at + ".content", "must be one character, got '" + content + "'");
                }
                out.put("content", content);
                out.put("start", count(n, "start", at));
                out.put("stop", count(n, "stop", at));
            }
            case "Sequence" -> sequence(n, at, depth, "decoders", out, this::decoder);
            default -> throw unsupported(at, type, "ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence");
        }
        return out;
    }

    /** Checked like the others (a corrupt post-processor is a corrupt file), but not passed on: see the class doc. */
    private JsonNode postProcessor(JsonNode n, String at, int depth) {
        if (n == null || n.isNull()) {
            return JsonNodeFactory.instance.nullNode();
        }
        String type = type(n, at, depth);
        ObjectNode out = typed(type);
        switch (type) {
            case "ByteLevel" -> byteLevel(n, at, out);
            case "TemplateProcessing" -> allowOnly(n, at, "type", "single", "pair", "special_tokens");
            case "Sequence" -> sequence(n, at, depth, "processors", out, this::postProcessor);
            default -> throw unsupported(at, type, "ByteLevel, TemplateProcessing, Sequence");
        }
        return out;
    }

    /** One component's checker: the canonical form of {@code n} (found at {@code at}), nested {@code depth} deep. */
    @FunctionalInterface
    private interface Component {
        JsonNode check(JsonNode n, String at, int depth);
    }

    /** A {@code Sequence} component: exactly {@code key}, a list whose elements are each checked by {@code element}. */
    private void sequence(JsonNode n, String at, int depth, String key, ObjectNode out, Component element) {
        allowOnly(n, at, "type", key);
        JsonNode l = required(n, key, at);
        if (!l.isArray()) {
            throw bad(at + "." + key, "must be a list");
        }
        ArrayNode items = out.putArray(key);
        for (int i = 0; i < l.size(); i++) {
            items.add(element.check(l.get(i), at + "." + key + "[" + i + "]", depth + 1));
        }
    }

    private void byteLevel(JsonNode n, String at, ObjectNode out) {
        allowOnly(n, at, "type", "add_prefix_space", "trim_offsets", "use_regex");
        out.put("add_prefix_space", bool(n, "add_prefix_space", at, true));
        out.put("trim_offsets", bool(n, "trim_offsets", at, true));
        out.put("use_regex", bool(n, "use_regex", at, true));
    }

    private void metaspace(JsonNode n, String at, ObjectNode out) {
        allowOnly(n, at, "type", "replacement", "prepend_scheme", "split", "add_prefix_space", "str_rep");
        String replacement = text(n, "replacement", at);
        if (replacement.codePointCount(0, replacement.length()) != 1) {
            throw bad(at + ".replacement", "must be one character, got '" + replacement + "'");
        }
        out.put("replacement", replacement);
        String scheme = n.has("prepend_scheme") ? text(n, "prepend_scheme", at)
                : bool(n, "add_prefix_space", at, true) ? "always" : "never";
        if (!Set.of("first", "never", "always").contains(scheme)) {
            throw bad(at + ".prepend_scheme", "'" + scheme + "' is not one of first, never, always");
        }
        out.put("prepend_scheme", scheme);
        out.put("split", bool(n, "split", at, true));
    }

    private void replace(JsonNode n, String at, ObjectNode out) {
        allowOnly(n, at, "type", "pattern", "content");
        out.set("pattern", pattern(required(n, "pattern", at), at + ".pattern", false));
        out.put("content", text(n, "content", at));
    }

    /** {@code {"String": s}}, or {@code {"Regex": r}} where {@code regexAllowed} (the library reports a bad regex as an error). */
    private JsonNode pattern(JsonNode p, String at, boolean regexAllowed) {
        requireObject(p, at);
        if (p.size() != 1) {
            throw bad(at, "must be {\"String\": ...}" + (regexAllowed ? " or {\"Regex\": ...}" : "") + ", got " + p);
        }
        ObjectNode out = JsonNodeFactory.instance.objectNode();
        if (p.has("String")) {
            out.put("String", text(p, "String", at));
        } else if (regexAllowed && p.has("Regex")) {
            String regex = text(p, "Regex", at);
            if (regex.isEmpty()) {
                throw bad(at + ".Regex", "is empty");
            }
            out.put("Regex", regex);
        } else {
            throw bad(at, "must be {\"String\": ...}" + (regexAllowed ? " or {\"Regex\": ...}" : "") + ", got " + p);
        }
        return out;
    }

    private String behavior(JsonNode n, String at, String fallback) {
        String b = n.has("behavior") || fallback == null ? text(n, "behavior", at) : fallback;
        if (!Set.of("Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous").contains(b)) {
            throw bad(at + ".behavior", "'" + b + "' is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
        }
        return b;
    }

    // ---- helpers ----

    private String type(JsonNode n, String at, int depth) {
        requireObject(n, at);
        if (depth > MAX_DEPTH) {
            throw bad(at, "Sequence nested deeper than " + MAX_DEPTH);
        }
        return text(n, "type", at);
    }

    private static ObjectNode typed(String type) {
        ObjectNode o = JsonNodeFactory.instance.objectNode();
        o.put("type", type);
        return o;
    }

    private void allowOnly(JsonNode n, String at, String... keys) {
        Set<String> allowed = Set.of(keys);
        for (Iterator<String> it = n.fieldNames(); it.hasNext(); ) {
            String k = it.next();
            if (!allowed.contains(k)) {
                throw bad(at.isEmpty() ? k : at + "." + k, "is not a field Lockstep knows here (known: " + String.join(", ", keys) + ")");
            }
        }
    }

    private JsonNode required(JsonNode n, String key, String at) {
        JsonNode v = n.get(key);
        if (v == null || v.isNull()) {
            throw bad(at.isEmpty() ? key : at + "." + key, "is missing");
        }
        return v;
    }

    private void requireObject(JsonNode n, String at) {
        if (n == null || !n.isObject()) {
            throw bad(at, "must be a JSON object, got " + (n == null ? "nothing" : n.getNodeType().toString().toLowerCase()));
        }
    }

    private String text(JsonNode n, String key, String at) {
        JsonNode v = required(n, key, at);
        if (!v.isTextual()) {
            throw bad(at + "." + key, "must be a string, got " + v);
        }
        return v.asText();
    }

    private boolean bool(JsonNode n, String key, String at, boolean fallback) {
        JsonNode v = n.get(key);
        if (v == null || v.isNull()) {
            return fallback;
        }
        if (!v.isBoolean()) {
            throw bad(at + "." + key, "must be true or false, got " + v);
        }
        return v.asBoolean();
    }

    private int count(JsonNode n, String key, String at) {
        JsonNode v = required(n, key, at);
        if (!v.isIntegralNumber() || !v.canConvertToInt() || v.asInt() < 0 || v.asInt() > 1024) {
            throw bad(at + "." + key, "must be an integer in [0, 1024], got " + v);
        }
        return v.asInt();
    }

    private LockstepException unsupported(String at, String type, String supported) {
        return bad(at + ".type", "'" + type + "' is not supported (supported: " + supported + ")");
    }

    private LockstepException bad(String at, String what) {
        return new LockstepException(file + ": " + (at.isEmpty() ? "" : at + " ") + what);
    }
}
