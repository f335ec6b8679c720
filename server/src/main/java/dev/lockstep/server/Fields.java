package dev.lockstep.server;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;

/** Typed, range-checked access to a request's JSON fields; a wrong one is a 400 naming the field and what it must be. */
final class Fields {
    private Fields() {
    }

    static boolean present(JsonNode body, String field) {
        JsonNode v = body.get(field);
        return v != null && !v.isNull();
    }

    static double number(JsonNode body, String field, double fallback, double min, double max) {
        JsonNode v = body.get(field);
        if (v == null || v.isNull()) {
            return fallback;
        }
        if (!v.isNumber() || !Double.isFinite(v.asDouble()) || v.asDouble() < min || v.asDouble() > max) {
            throw ApiError.invalid(field, "'" + field + "' must be a number in [" + fmt(min) + ", " + fmt(max) + "], got " + brief(v));
        }
        return v.asDouble();
    }

    static int integer(JsonNode body, String field, int fallback, int min, int max) {
        JsonNode v = body.get(field);
        if (v == null || v.isNull()) {
            return fallback;
        }
        if (!v.isIntegralNumber() || !v.canConvertToLong() || v.asLong() < min || v.asLong() > max) {
            throw ApiError.invalid(field, "'" + field + "' must be an integer in [" + min + ", " + max + "], got " + brief(v));
        }
        return (int) v.asLong();
    }

    static long seed(JsonNode body, String field, long fallback) {
        JsonNode v = body.get(field);
        if (v == null || v.isNull()) {
            return fallback;
        }
        if (!v.isIntegralNumber() || !v.canConvertToLong()) {
            throw ApiError.invalid(field, "'" + field + "' must be a 64-bit integer, got " + brief(v));
        }
        return v.asLong();
    }

    static boolean bool(JsonNode body, String field, boolean fallback) {
        JsonNode v = body.get(field);
        if (v == null || v.isNull()) {
            return fallback;
        }
        if (!v.isBoolean()) {
            throw ApiError.invalid(field, "'" + field + "' must be a boolean, got " + brief(v));
        }
        return v.asBoolean();
    }

    static String string(JsonNode body, String field, String fallback) {
        JsonNode v = body.get(field);
        if (v == null || v.isNull()) {
            return fallback;
        }
        if (!v.isTextual()) {
            throw ApiError.invalid(field, "'" + field + "' must be a string, got " + brief(v));
        }
        return v.asText();
    }

    /** {@code stop}: a string or an array of at most 4 non-empty strings (OpenAI's limit is 4; we allow 16). */
    static List<String> stops(JsonNode body) {
        JsonNode v = body.get("stop");
        List<String> out = new ArrayList<>();
        if (v == null || v.isNull()) {
            return out;
        }
        if (v.isTextual()) {
            v = com.fasterxml.jackson.databind.node.JsonNodeFactory.instance.arrayNode().add(v.asText());
        }
        if (!v.isArray() || v.size() > 16) {
            throw ApiError.invalid("stop", "'stop' must be a string or an array of at most 16 strings, got " + brief(v));
        }
        for (JsonNode s : v) {
            if (!s.isTextual() || s.asText().isEmpty()) {
                throw ApiError.invalid("stop", "'stop' entries must be non-empty strings, got " + brief(s));
            }
            out.add(s.asText());
        }
        return out;
    }

    static String brief(JsonNode v) {
        String s = v.toString();
        return s.length() > 40 ? s.substring(0, 40) + "..." : s;
    }

    private static String fmt(double d) {
        return d == Math.rint(d) && Math.abs(d) < 1e15 ? Long.toString((long) d) : Double.toString(d);
    }
}
