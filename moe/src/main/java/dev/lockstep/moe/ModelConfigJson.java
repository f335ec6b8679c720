package dev.lockstep.moe;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * A parsed {@code config.json} with typed accessors whose errors name the file, the key and what was
 * expected. Families read their hyper-parameters through this, so every family's errors look alike.
 */
public final class ModelConfigJson {
    private final Path file;
    private final JsonNode root;

    private ModelConfigJson(Path file, JsonNode root) {
        this.file = file;
        this.root = root;
    }

    public static ModelConfigJson read(Path file) {
        try {
            JsonNode root = dev.lockstep.memory.Json.MAPPER.readTree(Files.readString(file));
            if (root == null || !root.isObject()) {
                throw new ConfigException(file + ": expected a JSON object");
            }
            return new ModelConfigJson(file, root);
        } catch (NoSuchFileException e) {
            throw new ConfigException(file + ": no such file (every model directory needs a config.json)");
        } catch (JsonProcessingException e) {
            throw new ConfigException(file + ": not valid JSON (" + e.getOriginalMessage() + ")", e);
        } catch (IOException e) {
            throw new ConfigException(file + ": cannot read (" + e.getMessage() + ")", e);
        }
    }

    public Path file() {
        return file;
    }

    /** The file and, once known, the family: {@code path/config.json (mixtral)}, the prefix of every config error. */
    public String where() {
        JsonNode t = root.get("model_type");
        return t != null && t.isTextual() ? file + " (" + t.asText() + ")" : file.toString();
    }

    public boolean has(String key) {
        JsonNode n = root.get(key);
        return n != null && !n.isNull();
    }

    /** The first of {@code keys} present (and not null), or null. Lets families accept old and new key names. */
    private JsonNode first(String... keys) {
        for (String k : keys) {
            JsonNode n = root.get(k);
            if (n != null && !n.isNull()) {
                return n;
            }
        }
        return null;
    }

    private String names(String... keys) {
        return keys.length == 1 ? "'" + keys[0] + "'" : "'" + String.join("' or '", keys) + "'";
    }

    public String requireString(String key) {
        JsonNode n = first(key);
        if (n == null || !n.isTextual()) {
            throw new ConfigException(where() + ": key '" + key + "' must be a string" + got(n));
        }
        return n.asText();
    }

    public int requirePositiveInt(String... keys) {
        JsonNode n = first(keys);
        if (n == null) {
            throw new ConfigException(where() + ": missing key " + names(keys) + " (a positive integer)");
        }
        return positiveInt(n, names(keys));
    }

    public int positiveIntOr(int fallback, String... keys) {
        JsonNode n = first(keys);
        return n == null ? fallback : positiveInt(n, names(keys));
    }

    private int positiveInt(JsonNode n, String name) {
        if (!n.isIntegralNumber() || !n.canConvertToInt() || n.asInt() <= 0) {
            throw new ConfigException(where() + ": key " + name + " must be a positive integer" + got(n));
        }
        return n.asInt();
    }

    /** An integer in {@code [min, max]}: every count or size is range-checked before anything is sized by it. */
    public int requireIntInRange(int min, int max, String... keys) {
        int v = requirePositiveInt(keys);
        return checkRange(v, min, max, names(keys));
    }

    /** As {@link #requireIntInRange} with a default when the key is absent. */
    public int intInRangeOr(int fallback, int min, int max, String... keys) {
        JsonNode n = first(keys);
        return n == null ? fallback : checkRange(positiveInt(n, names(keys)), min, max, names(keys));
    }

    private int checkRange(int v, int min, int max, String name) {
        if (v < min || v > max) {
            throw new ConfigException(where() + ": key " + name + " is " + v + ", outside the supported range [" + min + ", " + max + "]");
        }
        return v;
    }

    /** A finite number in {@code [min, max]}. */
    public double requireDoubleInRange(double min, double max, String... keys) {
        double v = requirePositiveDouble(keys);
        if (!(v >= min && v <= max)) {
            throw new ConfigException(where() + ": key " + names(keys) + " is " + v + ", outside the supported range [" + min + ", " + max + "]");
        }
        return v;
    }

    public double requirePositiveDouble(String... keys) {
        JsonNode n = first(keys);
        if (n == null) {
            throw new ConfigException(where() + ": missing key " + names(keys) + " (a positive number)");
        }
        if (!n.isNumber() || !(n.asDouble() > 0) || Double.isInfinite(n.asDouble())) {
            throw new ConfigException(where() + ": key " + names(keys) + " must be a positive number" + got(n));
        }
        return n.asDouble();
    }

    public boolean booleanOr(boolean fallback, String key) {
        JsonNode n = first(key);
        if (n == null) {
            return fallback;
        }
        if (!n.isBoolean()) {
            throw new ConfigException(where() + ": key '" + key + "' must be true or false" + got(n));
        }
        return n.asBoolean();
    }

    public List<Integer> intListOr(List<Integer> fallback, String key) {
        JsonNode n = first(key);
        if (n == null) {
            return fallback;
        }
        if (!n.isArray()) {
            throw new ConfigException(where() + ": key '" + key + "' must be a list of integers" + got(n));
        }
        List<Integer> out = new ArrayList<>();
        for (JsonNode e : n) {
            if (!e.isIntegralNumber() || !e.canConvertToInt() || e.asInt() < 0) {
                throw new ConfigException(where() + ": key '" + key + "' must be a list of non-negative integers" + got(n));
            }
            out.add(e.asInt());
        }
        return out;
    }

    /** A nested object (e.g. {@code rope_parameters}), or null when absent. */
    public JsonNode object(String key) {
        JsonNode n = first(key);
        if (n != null && !n.isObject()) {
            throw new ConfigException(where() + ": key '" + key + "' must be an object" + got(n));
        }
        return n;
    }

    public JsonNode raw(String key) {
        return first(key);
    }

    private static String got(JsonNode n) {
        return n == null ? " (missing)" : ", got " + n;
    }
}
