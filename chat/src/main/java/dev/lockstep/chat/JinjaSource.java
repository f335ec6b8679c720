package dev.lockstep.chat;

import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Rewrites the few Python-Jinja constructs that Jinjava's expression parser reads differently into equivalent ones
 * it reads the same way, inside {@code {% %}} and {@code {{ }}} tags only (text between tags is untouched):
 * <ul>
 *   <li>{@code x[::-1]} (reverse slice; Jinjava has no slice step) becomes {@code x|reverse};</li>
 *   <li>{@code x[:n]} (slice with no start) becomes {@code x[0:n]};</li>
 *   <li>{@code not x is defined} (Python: {@code not (x is defined)}; Jinjava binds {@code not} first) becomes
 *       {@code not (x is defined)}, for every test;</li>
 *   <li>{@code not x == y} (Python: {@code not (x == y)}) becomes {@code not (x == y)}, for every comparison;</li>
 *   <li>{@code messages[a+1:]}, {@code x.y[:n-1]} (Jinjava reads a slice bound only as a plain value, inside a
 *       {@code set} not even that) become {@code (messages|__lockstep_slice(a+1, none))}: Python's slicing; other
 *       slices get their bounds parenthesized;</li>
 *   <li>{@code namespace(n=messages|length - 1)} (Jinjava applies {@code - 1} to the named argument) becomes
 *       {@code namespace(n=(messages|length - 1))}.</li>
 * </ul>
 * Each rewrite is exercised by the golden renderings of real templates (ChatTemplateGoldenTest).
 */
final class JinjaSource {
    private static final Pattern TAG = Pattern.compile("\\{[{%].*?[%}]\\}", Pattern.DOTALL);
    private static final Pattern REVERSE_SLICE = Pattern.compile("\\[\\s*::\\s*-1\\s*\\]");
    private static final Pattern OPEN_SLICE = Pattern.compile("\\[\\s*:(?!:)");
    private static final Pattern NOT_COMPARE = Pattern.compile(
            "\\bnot\\s+([A-Za-z_][\\w.]*(?:\\[[^\\]\\[]*\\])*)\\s*(==|!=|<=|>=|<|>)\\s*(-?\\d+(?:\\.\\d+)?|'[^']*'|\"[^\"]*\"|[A-Za-z_][\\w.]*)");
    private static final Pattern SLICE = Pattern.compile("\\[([^\\[\\]:'\"]*):([^\\[\\]:'\"]*)\\]");
    private static final Pattern PATH_SLICE = Pattern.compile(
            "(?<![\\w.\\])])([A-Za-z_][\\w]*(?:\\.[A-Za-z_]\\w*)*)\\[([^\\[\\]:'\"]*):([^\\[\\]:'\"]*)\\]");
    /** The filter that slices as Python does (registered by {@link ChatTemplate}). */
    static final String SLICE_FILTER = "__lockstep_slice";
    private static final Pattern NOT_IS = Pattern.compile(
            "\\bnot\\s+([A-Za-z_][\\w.]*(?:\\[[^\\]\\[]*\\])*)\\s+is\\s+(not\\s+)?([A-Za-z_]\\w*)");

    private JinjaSource() {
    }

    /** {@code name.path[a:b]} becomes {@code (name.path|__lockstep_slice(a, b))}: Python's slice semantics, any bounds. */
    private static String pathSlices(String tag) {
        Matcher m = PATH_SLICE.matcher(tag);
        StringBuilder out = new StringBuilder();
        while (m.find()) {
            String a = spaced(m.group(2).strip());
            String b = spaced(m.group(3).strip());
            m.appendReplacement(out, Matcher.quoteReplacement("(" + m.group(1) + "|" + SLICE_FILTER + "(" + (a.isEmpty() ? "none" : a) + ", "
                    + (b.isEmpty() ? "none" : b) + "))"));
        }
        m.appendTail(out);
        return out.toString();
    }

    /** {@code x[a+1:]} and {@code x[0:n-1]}: Jinjava parses a slice bound only as a plain value; parenthesized it takes any. */
    private static String parenthesizeSliceBounds(String tag) {
        Matcher m = SLICE.matcher(tag);
        StringBuilder out = new StringBuilder();
        while (m.find()) {
            m.appendReplacement(out, Matcher.quoteReplacement("[" + bound(m.group(1)) + ":" + bound(m.group(2)) + "]"));
        }
        m.appendTail(out);
        return out.toString();
    }

    /** {@code n+1} becomes {@code n + 1}: Jinjava's lexer reads {@code +1} after a name as a signed number. */
    private static String spaced(String e) {
        return e.replaceAll("([\\w)\\]])([+-])(\\d)", "$1 $2 $3");
    }

    private static String bound(String b) {
        String t = spaced(b.strip());
        return t.isEmpty() || t.matches("-?[\\w.]+") ? b : "(" + t + ")";
    }

    private static String parenthesizeNamespaceArguments(String tag) {
        int at = tag.indexOf("namespace(");
        if (at < 0) {
            return tag;
        }
        int open = at + "namespace(".length();
        StringBuilder out = new StringBuilder(tag.substring(0, open));
        for (int argStart = open; ; ) {
            int i = Scan.topLevel(tag, argStart, ",", ")");
            if (i < 0) {
                return tag; // unbalanced: left as written, the parser reports it
            }
            out.append(namedArgument(tag.substring(argStart, i))).append(tag.charAt(i));
            if (tag.charAt(i) == ')') {
                return out + parenthesizeNamespaceArguments(tag.substring(i + 1));
            }
            argStart = i + 1;
        }
    }

    private static String namedArgument(String argument) {
        Matcher m = Pattern.compile("^(\\s*[A-Za-z_]\\w*\\s*)=(?!=)(.*)$", Pattern.DOTALL).matcher(argument);
        return m.matches() ? m.group(1) + "=(" + m.group(2) + ")" : argument;
    }

    private static final Pattern ANY_TAG = Pattern.compile("\\{[{%#].*?[%}#]\\}", Pattern.DOTALL);

    /**
     * Jinja2's {@code lstrip_blocks}: the spaces and tabs between the start of a line and a block tag or comment are
     * removed ({@code {%+} keeps them). Done here because Jinjava's own strips them before any tag, also after text
     * on the same line ({@code "a: {% if %}"} lost its space).
     */
    static String lstripBlocks(String source) {
        Matcher m = ANY_TAG.matcher(source);
        StringBuilder out = new StringBuilder(source.length());
        int textStart = 0;
        while (m.find()) {
            String text = source.substring(textStart, m.start());
            String tag = m.group();
            boolean strips = (tag.startsWith("{%") || tag.startsWith("{#")) && !tag.startsWith("{%+") && !tag.startsWith("{#+");
            if (strips) {
                int nl = text.lastIndexOf('\n');
                String tail = text.substring(nl + 1);
                if ((nl >= 0 || m.start() == tail.length()) && tail.chars().allMatch(c -> c == ' ' || c == '\t')) {
                    text = text.substring(0, nl + 1);
                }
            }
            out.append(text).append(tag);
            textStart = m.end();
        }
        return out.append(source.substring(textStart)).toString();
    }

    private static final Pattern COMMENT = Pattern.compile("\\{#(-?)(.*?)(-?)#\\}(\\n?)", Pattern.DOTALL);

    /**
     * Comments become empty expressions ({@code {{ '' }}}, whitespace control kept), the newline after one dropped as
     * {@code trim_blocks} drops it: in Jinja2 a comment is a token, so a later {@code {%-} strips only back to it; Jinjava
     * dropped comments first and {@code {%-} then ate the text before the comment too.
     */
    static String comments(String source) {
        Matcher m = COMMENT.matcher(source);
        StringBuilder out = new StringBuilder(source.length());
        while (m.find()) {
            boolean rightTrim = !m.group(3).isEmpty();
            String replacement = "{{" + m.group(1) + " '' " + m.group(3) + "}}" + (rightTrim ? m.group(4) : "");
            m.appendReplacement(out, Matcher.quoteReplacement(replacement));
        }
        m.appendTail(out);
        return out.toString();
    }

    static String normalize(String source) {
        source = comments(lstripBlocks(source));
        Matcher tags = TAG.matcher(source);
        StringBuilder out = new StringBuilder(source.length());
        while (tags.find()) {
            String tag = tags.group();
            tag = REVERSE_SLICE.matcher(tag).replaceAll("|reverse");
            tag = pathSlices(tag);
            tag = OPEN_SLICE.matcher(tag).replaceAll("[0:");
            tag = NOT_IS.matcher(tag).replaceAll("not ($1 is $2$3)");
            tag = NOT_COMPARE.matcher(tag).replaceAll("not ($1 $2 $3)");
            tag = parenthesizeSliceBounds(tag);
            tag = parenthesizeNamespaceArguments(tag);
            tags.appendReplacement(out, Matcher.quoteReplacement(tag));
        }
        tags.appendTail(out);
        return out.toString();
    }
}
