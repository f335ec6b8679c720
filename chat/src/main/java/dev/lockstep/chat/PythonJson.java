package dev.lockstep.chat;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Python's {@code json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...)}, byte for byte: HF's
 * chat templates print tools and arguments with it ({@code tojson}), and a model was trained on exactly that spacing
 * ({@code ", "} and {@code ": "} without indent, {@code ","} and {@code ": "} with it). Values are what {@link
 * ChatValues} builds: Map, List, String, Long/Integer, Double, Boolean, null.
 */
final class PythonJson {
    private PythonJson() {
    }

    static String dumps(Object value, Integer indent, String itemSeparator, String keySeparator, boolean sortKeys, boolean ensureAscii) {
        String items = itemSeparator != null ? itemSeparator : indent == null ? ", " : ",";
        String keys = keySeparator != null ? keySeparator : ": ";
        StringBuilder out = new StringBuilder();
        write(out, value, indent, items, keys, sortKeys, ensureAscii, 0);
        return out.toString();
    }

    private static void write(StringBuilder out, Object v, Integer indent, String items, String keys, boolean sort, boolean ascii, int depth) {
        if (v == null) {
            out.append("null");
        } else if (v instanceof Boolean b) {
            out.append(b ? "true" : "false");
        } else if (v instanceof CharSequence s) {
            string(out, s.toString(), ascii);
        } else if (v instanceof Double || v instanceof Float) {
            out.append(PythonValues.floatRepr(((Number) v).doubleValue()));
        } else if (v instanceof Number n) {
            out.append(n.toString());
        } else if (v instanceof Map<?, ?> m) {
            if (m.isEmpty()) {
                out.append("{}");
                return;
            }
            Map<?, ?> entries = sort ? new TreeMap<>(m) : m;
            out.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : entries.entrySet()) {
                if (!first) {
                    out.append(items);
                }
                first = false;
                newline(out, indent, depth + 1);
                string(out, String.valueOf(e.getKey()), ascii);
                out.append(keys);
                write(out, e.getValue(), indent, items, keys, sort, ascii, depth + 1);
            }
            newline(out, indent, depth);
            out.append('}');
        } else if (v instanceof Collection<?> || v instanceof Object[]) {
            List<?> list = v instanceof Object[] a ? List.of(a) : new ArrayList<>((Collection<?>) v);
            if (list.isEmpty()) {
                out.append("[]");
                return;
            }
            out.append('[');
            for (int i = 0; i < list.size(); i++) {
                if (i > 0) {
                    out.append(items);
                }
                newline(out, indent, depth + 1);
                write(out, list.get(i), indent, items, keys, sort, ascii, depth + 1);
            }
            newline(out, indent, depth);
            out.append(']');
        } else {
            throw new ChatTemplateException("tojson: Object of type " + v.getClass().getSimpleName() + " is not JSON serializable");
        }
    }

    private static void newline(StringBuilder out, Integer indent, int depth) {
        if (indent != null) {
            out.append('\n').append(" ".repeat(indent * depth));
        }
    }

    private static void string(StringBuilder out, String s, boolean ascii) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                case '\b' -> out.append("\\b");
                case '\f' -> out.append("\\f");
                default -> {
                    if (c < 0x20 || ascii && c > 0x7e) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }
}
