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
 *   <li>{@code namespace(n=messages|length - 1)} (Jinjava applies {@code - 1} to the named argument) becomes
 *       {@code namespace(n=(messages|length - 1))}.</li>
 * </ul>
 * Each rewrite is exercised by the golden renderings of real templates (ChatTemplateGoldenTest).
 */
final class JinjaSource {
    private static final Pattern TAG = Pattern.compile("\\{[{%].*?[%}]\\}", Pattern.DOTALL);
    private static final Pattern REVERSE_SLICE = Pattern.compile("\\[\\s*::\\s*-1\\s*\\]");
    private static final Pattern OPEN_SLICE = Pattern.compile("\\[\\s*:(?!:)");
    private static final Pattern NOT_IS = Pattern.compile(
            "\\bnot\\s+([A-Za-z_][\\w.]*(?:\\[[^\\]\\[]*\\])*)\\s+is\\s+(not\\s+)?([A-Za-z_]\\w*)");

    private JinjaSource() {
    }

    private static String parenthesizeNamespaceArguments(String tag) {
        int at = tag.indexOf("namespace(");
        if (at < 0) {
            return tag;
        }
        StringBuilder out = new StringBuilder(tag.substring(0, at + "namespace(".length()));
        int i = at + "namespace(".length();
        int depth = 0;
        char quote = 0;
        int argStart = i;
        for (; i < tag.length(); i++) {
            char c = tag.charAt(i);
            if (quote != 0) {
                if (c == quote) {
                    quote = 0;
                }
            } else if (c == '"' || c == '\'') {
                quote = c;
            } else if (c == '(' || c == '[' || c == '{') {
                depth++;
            } else if ((c == ')' || c == ']' || c == '}') && depth > 0) {
                depth--;
            } else if ((c == ',' || c == ')') && depth == 0) {
                out.append(namedArgument(tag.substring(argStart, i))).append(c);
                argStart = i + 1;
                if (c == ')') {
                    return out + parenthesizeNamespaceArguments(tag.substring(i + 1));
                }
            }
        }
        return tag; // unbalanced: left as written, the parser reports it
    }

    private static String namedArgument(String argument) {
        Matcher m = Pattern.compile("^(\\s*[A-Za-z_]\\w*\\s*)=(?!=)(.*)$", Pattern.DOTALL).matcher(argument);
        return m.matches() ? m.group(1) + "=(" + m.group(2) + ")" : argument;
    }

    static String normalize(String source) {
        Matcher tags = TAG.matcher(source);
        StringBuilder out = new StringBuilder(source.length());
        while (tags.find()) {
            String tag = tags.group();
            tag = REVERSE_SLICE.matcher(tag).replaceAll("|reverse");
            tag = OPEN_SLICE.matcher(tag).replaceAll("[0:");
            tag = NOT_IS.matcher(tag).replaceAll("not ($1 is $2$3)");
            tag = parenthesizeNamespaceArguments(tag);
            tags.appendReplacement(out, Matcher.quoteReplacement(tag));
        }
        tags.appendTail(out);
        return out.toString();
    }
}
