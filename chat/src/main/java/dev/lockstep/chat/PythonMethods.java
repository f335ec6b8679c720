package dev.lockstep.chat;

import java.beans.FeatureDescriptor;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import jinjava.javax.el.ELContext;
import jinjava.javax.el.ELResolver;

/**
 * The Python methods HF chat templates call on strings ({@code content.startswith('<think>')},
 * {@code .split('</think>')[-1].lstrip('\n')}), dicts ({@code .items()}, {@code .get(k, d)}) and lists, with Python's
 * semantics; Jinjava alone would look for Java methods of those names. As in HF's {@code ImmutableSandboxedEnvironment},
 * a method that mutates a list or dict ({@code append}, {@code update}, ...) is refused with HF's message.
 */
final class PythonMethods extends ELResolver {
    private static final Set<String> LIST_MUTATORS = Set.of("append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse");
    private static final Set<String> DICT_MUTATORS = Set.of("update", "pop", "popitem", "setdefault", "clear");

    @Override
    public Object invoke(ELContext context, Object base, Object method, Class<?>[] paramTypes, Object[] params) {
        if (base == null || !(method instanceof String name)) {
            return null;
        }
        Object[] p = params == null ? new Object[0] : params;
        Object result;
        if (base instanceof String s) {
            result = string(s, name, p);
        } else if (base instanceof Map<?, ?> m) {
            if (DICT_MUTATORS.contains(name)) {
                throw new ChatTemplateException("access to attribute '" + name + "' of 'dict' object is unsafe.");
            }
            result = dict(m, name, p);
        } else if (base instanceof List<?> l) {
            if (LIST_MUTATORS.contains(name)) {
                throw new ChatTemplateException("access to attribute '" + name + "' of 'list' object is unsafe.");
            }
            result = list(l, name, p);
        } else {
            return null;
        }
        if (result != NOT_HANDLED) {
            context.setPropertyResolved(true);
            return result;
        }
        return null;
    }

    private static final Object NOT_HANDLED = new Object();

    private static Object string(String s, String name, Object[] p) {
        return switch (name) {
            case "startswith" -> anyAffix(p[0], a -> s.startsWith(a));
            case "endswith" -> anyAffix(p[0], a -> s.endsWith(a));
            case "strip" -> rstrip(lstrip(s, chars(p)), chars(p));
            case "lstrip" -> lstrip(s, chars(p));
            case "rstrip" -> rstrip(s, chars(p));
            case "split" -> split(s, p.length > 0 ? (String) p[0] : null, p.length > 1 ? ((Number) p[1]).intValue() : -1);
            case "rsplit" -> rsplit(s, p.length > 0 ? (String) p[0] : null, p.length > 1 ? ((Number) p[1]).intValue() : -1);
            case "splitlines" -> splitlines(s);
            case "replace" -> p.length > 2 ? replaceCount(s, (String) p[0], (String) p[1], ((Number) p[2]).intValue()) : s.replace((String) p[0], (String) p[1]);
            case "upper" -> s.toUpperCase(java.util.Locale.ROOT);
            case "lower" -> s.toLowerCase(java.util.Locale.ROOT);
            case "title" -> title(s);
            case "capitalize" -> s.isEmpty() ? s : s.substring(0, 1).toUpperCase(java.util.Locale.ROOT) + s.substring(1).toLowerCase(java.util.Locale.ROOT);
            case "find" -> (long) s.indexOf((String) p[0]);
            case "rfind" -> (long) s.lastIndexOf((String) p[0]);
            case "count" -> (long) count(s, (String) p[0]);
            case "join" -> join(s, p[0]);
            case "format" -> format(s, p);
            case "isdigit" -> !s.isEmpty() && s.chars().allMatch(Character::isDigit);
            case "isalpha" -> !s.isEmpty() && s.chars().allMatch(Character::isLetter);
            case "isspace" -> !s.isEmpty() && s.chars().allMatch(Character::isWhitespace);
            default -> NOT_HANDLED;
        };
    }

    private static Object dict(Map<?, ?> m, String name, Object[] p) {
        return switch (name) {
            case "items" -> items(m);
            case "keys" -> new ArrayList<>(m.keySet());
            case "values" -> new ArrayList<>(m.values());
            case "get" -> m.containsKey(p[0]) ? m.get(p[0]) : p.length > 1 ? p[1] : null;
            default -> NOT_HANDLED;
        };
    }

    /** Python's {@code d.items()}: the (key, value) pairs, in order ({@code dict | items} too). */
    static List<List<Object>> items(Map<?, ?> m) {
        List<List<Object>> items = new ArrayList<>();
        for (Map.Entry<?, ?> e : m.entrySet()) {
            items.add(java.util.Arrays.asList(e.getKey(), e.getValue()));
        }
        return items;
    }

    private static Object list(List<?> l, String name, Object[] p) {
        return switch (name) {
            case "index" -> (long) l.indexOf(p[0]);
            case "count" -> l.stream().filter(x -> java.util.Objects.equals(x, p[0])).count();
            default -> NOT_HANDLED;
        };
    }

    private static boolean anyAffix(Object affix, java.util.function.Predicate<String> test) {
        if (affix instanceof Collection<?> c) {
            for (Object a : c) {
                if (test.test((String) a)) {
                    return true;
                }
            }
            return false;
        }
        return test.test((String) affix);
    }

    private static String chars(Object[] p) {
        return p.length > 0 && p[0] != null ? (String) p[0] : null;
    }

    private static boolean stripped(char c, String chars) {
        return chars == null ? Character.isWhitespace(c) : chars.indexOf(c) >= 0;
    }

    static String lstrip(String s, String chars) {
        int i = 0;
        while (i < s.length() && stripped(s.charAt(i), chars)) {
            i++;
        }
        return s.substring(i);
    }

    static String rstrip(String s, String chars) {
        int i = s.length();
        while (i > 0 && stripped(s.charAt(i - 1), chars)) {
            i--;
        }
        return s.substring(0, i);
    }

    private static List<String> split(String s, String sep, int max) {
        List<String> out = new ArrayList<>();
        if (sep == null) {
            String rest = lstrip(s, null);
            while (!rest.isEmpty()) {
                if (max >= 0 && out.size() == max) {
                    out.add(rstrip(rest, null));
                    return out;
                }
                int i = 0;
                while (i < rest.length() && !Character.isWhitespace(rest.charAt(i))) {
                    i++;
                }
                out.add(rest.substring(0, i));
                rest = lstrip(rest.substring(i), null);
            }
            return out;
        }
        if (sep.isEmpty()) {
            throw new ChatTemplateException("split: empty separator");
        }
        int from = 0;
        while (max < 0 || out.size() < max) {
            int at = s.indexOf(sep, from);
            if (at < 0) {
                break;
            }
            out.add(s.substring(from, at));
            from = at + sep.length();
        }
        out.add(s.substring(from));
        return out;
    }

    private static List<String> rsplit(String s, String sep, int max) {
        if (sep == null || max < 0) {
            return split(s, sep, max);
        }
        List<String> out = new ArrayList<>();
        int end = s.length();
        while (out.size() < max) {
            int at = s.lastIndexOf(sep, end - sep.length());
            if (at < 0) {
                break;
            }
            out.add(0, s.substring(at + sep.length(), end));
            end = at;
        }
        out.add(0, s.substring(0, end));
        return out;
    }

    private static List<String> splitlines(String s) {
        List<String> out = new ArrayList<>();
        int start = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '\n' || c == '\r') {
                out.add(s.substring(start, i));
                if (c == '\r' && i + 1 < s.length() && s.charAt(i + 1) == '\n') {
                    i++;
                }
                start = i + 1;
            }
        }
        if (start < s.length()) {
            out.add(s.substring(start));
        }
        return out;
    }

    private static String replaceCount(String s, String from, String to, int count) {
        if (count < 0) {
            return s.replace(from, to);
        }
        StringBuilder out = new StringBuilder();
        int start = 0;
        for (int n = 0; n < count; n++) {
            int at = s.indexOf(from, start);
            if (at < 0) {
                break;
            }
            out.append(s, start, at).append(to);
            start = at + from.length();
        }
        return out.append(s.substring(start)).toString();
    }

    private static int count(String s, String sub) {
        if (sub.isEmpty()) {
            return s.length() + 1;
        }
        int n = 0;
        for (int at = s.indexOf(sub); at >= 0; at = s.indexOf(sub, at + sub.length())) {
            n++;
        }
        return n;
    }

    private static String title(String s) {
        StringBuilder out = new StringBuilder(s.length());
        boolean previousCased = false;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            out.append(previousCased ? Character.toLowerCase(c) : Character.toUpperCase(c));
            previousCased = Character.isLetter(c);
        }
        return out.toString();
    }

    /** {@code '{} and {0}'.format(a)}: positional fields only, rendered with Python's str(). */
    private static String format(String s, Object[] args) {
        StringBuilder out = new StringBuilder();
        int next = 0;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '{' && i + 1 < s.length() && s.charAt(i + 1) == '{') {
                out.append('{');
                i++;
            } else if (c == '}' && i + 1 < s.length() && s.charAt(i + 1) == '}') {
                out.append('}');
                i++;
            } else if (c == '{') {
                int close = s.indexOf('}', i);
                if (close < 0) {
                    throw new ChatTemplateException("format: single '{' encountered in format string");
                }
                String field = s.substring(i + 1, close);
                int index = field.isEmpty() ? next++ : Integer.parseInt(field);
                if (index >= args.length) {
                    throw new ChatTemplateException("format: Replacement index " + index + " out of range for positional args tuple");
                }
                out.append(PythonValues.str(args[index]));
                i = close;
            } else {
                out.append(c);
            }
        }
        return out.toString();
    }

    private static String join(String sep, Object items) {
        StringBuilder out = new StringBuilder();
        Iterator<?> it = ((Iterable<?>) items).iterator();
        while (it.hasNext()) {
            out.append(PythonValues.str(it.next()));
            if (it.hasNext()) {
                out.append(sep);
            }
        }
        return out.toString();
    }

    @Override
    public Class<?> getCommonPropertyType(ELContext context, Object base) {
        return null;
    }

    @Override
    public Iterator<FeatureDescriptor> getFeatureDescriptors(ELContext context, Object base) {
        return null;
    }

    @Override
    public Class<?> getType(ELContext context, Object base, Object property) {
        return null;
    }

    @Override
    public Object getValue(ELContext context, Object base, Object property) {
        if (base instanceof com.hubspot.jinjava.util.ForLoop loop && ("previtem".equals(property) || "nextitem".equals(property))) {
            var interpreter = com.hubspot.jinjava.interpret.JinjavaInterpreter.getCurrent();
            Object items = interpreter == null ? null : interpreter.getContext().get(PythonForTag.LOOP_ITEMS);
            if (items instanceof List<?> list) {
                int at = loop.getIndex0() + ("previtem".equals(property) ? -1 : 1);
                context.setPropertyResolved(true);
                return at >= 0 && at < list.size() ? list.get(at) : null;
            }
        }
        return null;
    }

    @Override
    public boolean isReadOnly(ELContext context, Object base, Object property) {
        return true;
    }

    @Override
    public void setValue(ELContext context, Object base, Object property, Object value) {
        // read-only: the default resolvers after this one decide
    }
}
