package dev.lockstep.chat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Values as a chat template sees them: JSON objects become dicts and arrays lists that print as Python prints them
 * ({@code {{ tool }}} gives {@code {'type': 'function', ...}}, as in HF), numbers stay integral or floating.
 */
public final class ChatValues {
    private static final ObjectMapper JSON = new ObjectMapper();

    private ChatValues() {
    }

    /** A JSON tree as template values. */
    public static Object of(JsonNode node) {
        return of(JSON.convertValue(node, Object.class));
    }

    /** Plain Java maps, lists and scalars (e.g. Jackson's untyped output) as template values, copied. */
    public static Object of(Object value) {
        if (value instanceof Map<?, ?> m) {
            Dict d = new Dict();
            m.forEach((k, v) -> d.put(String.valueOf(k), of(v)));
            return d;
        }
        if (value instanceof Collection<?> c) {
            PyList l = new PyList();
            c.forEach(v -> l.add(of(v)));
            return l;
        }
        if (value instanceof Integer i) {
            return i.longValue();
        }
        if (value instanceof Float f) {
            return f.doubleValue();
        }
        return value;
    }

    /** A dict that prints as Python's repr. */
    static final class Dict extends LinkedHashMap<String, Object> {
        private static final long serialVersionUID = 1L;

        @Override
        public String toString() {
            return PythonValues.repr(this);
        }
    }

    /** A list that prints as Python's repr. */
    static final class PyList extends ArrayList<Object> {
        private static final long serialVersionUID = 1L;

        @Override
        public String toString() {
            return PythonValues.repr(this);
        }
    }
}
