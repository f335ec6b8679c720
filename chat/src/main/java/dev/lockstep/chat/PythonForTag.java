package dev.lockstep.chat;

import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.lib.tag.ForTag;
import com.hubspot.jinjava.tree.TagNode;
import com.hubspot.jinjava.tree.parse.TagToken;
import com.hubspot.jinjava.util.ForLoop;
import com.hubspot.jinjava.util.ObjectIterator;
import com.hubspot.jinjava.util.ObjectTruthValue;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Jinjava's {@code for} with two of Python Jinja's semantics it lacks: a filtered loop
 * ({@code {% for x in xs if cond %}}: the loop, {@code loop.index} and {@code loop.last} included, runs over the items
 * that pass), and iterating {@code None} is an error (jinja2 raises {@code TypeError: 'NoneType' object is not
 * iterable}, so HF refuses such a conversation; an undefined name still iterates as empty, as in Jinja), and the
 * items behind {@code loop.previtem} / {@code loop.nextitem} (which Jinjava's loop object does not have).
 */
final class PythonForTag extends ForTag {
    private static final long serialVersionUID = 1L;
    /** The context variable holding the names the caller bound to None (Jinjava's context does not keep null values). */
    static final String NONE_NAMES = "__lockstep_none_names__";
    /** The context variable holding the innermost loop's items, for {@code loop.previtem} and {@code loop.nextitem}. */
    static final String LOOP_ITEMS = "__lockstep_loop_items__";
    private static final Pattern NAME = Pattern.compile("[A-Za-z_]\\w*");
    private static final Pattern ATTRIBUTE = Pattern.compile("([A-Za-z_]\\w*)(?:\\.([A-Za-z_]\\w*)|\\[\\s*['\"]([^'\"]+)['\"]\\s*\\])");

    @Override
    public String interpretUnchecked(TagNode tagNode, JinjavaInterpreter interpreter) {
        var varsAndExpression = getLoopVarsAndExpression((TagToken) tagNode.getMaster());
        List<String> vars = varsAndExpression.getLeft();
        String expression = varsAndExpression.getRight();
        String condition = null;
        int ifAt = topLevelIf(expression);
        if (ifAt >= 0) {
            condition = expression.substring(ifAt + " if ".length()).strip();
            expression = expression.substring(0, ifAt).strip();
        }
        Object collection = interpreter.resolveELExpression(expression, tagNode.getLineNumber());
        if (collection == null && boundToNone(expression, interpreter)) {
            throw new ChatTemplateException("TypeError: 'NoneType' object is not iterable (for ... in " + expression + ")");
        }
        if (condition != null) {
            List<Object> kept = new ArrayList<>();
            ForLoop items = ObjectIterator.getLoop(collection instanceof Map<?, ?> m ? new ArrayList<>(m.keySet()) : collection); // keys, as Python
            try (var scope = interpreter.enterScope()) {
                while (items.hasNext()) {
                    Object item = items.next();
                    bind(interpreter, vars, item);
                    if (ObjectTruthValue.evaluate(interpreter.resolveELExpression(condition, tagNode.getLineNumber()))) {
                        kept.add(item);
                    }
                }
            }
            collection = kept;
        }
        List<Object> items = null; // what loop.previtem / loop.nextitem index into (PythonMethods resolves them)
        if (collection instanceof java.util.Collection<?> c) {
            items = new ArrayList<>(c);
        } else if (collection instanceof Map<?, ?> m) {
            items = new ArrayList<>(m.keySet());
        }
        try (var scope = interpreter.enterScope()) {
            interpreter.getContext().put(LOOP_ITEMS, items);
            return renderForCollection(tagNode, interpreter, vars, collection);
        }
    }

    private static void bind(JinjavaInterpreter interpreter, List<String> vars, Object item) {
        if (vars.size() == 1) {
            interpreter.getContext().put(vars.get(0), item);
            return;
        }
        List<?> parts = item instanceof List<?> l ? l : item instanceof Map.Entry<?, ?> e ? List.of(e.getKey(), e.getValue()) : List.of();
        for (int i = 0; i < vars.size(); i++) {
            interpreter.getContext().put(vars.get(i), i < parts.size() ? parts.get(i) : null);
        }
    }

    /** Whether {@code expression} names a variable or key that exists and holds None (not one that is undefined). */
    private static boolean boundToNone(String expression, JinjavaInterpreter interpreter) {
        String e = expression.strip();
        if (NAME.matcher(e).matches()) {
            return interpreter.getContext().get(NONE_NAMES) instanceof java.util.Set<?> none && none.contains(e);
        }
        Matcher m = ATTRIBUTE.matcher(e);
        if (m.matches()) {
            Object base = interpreter.getContext().get(m.group(1));
            String key = m.group(2) != null ? m.group(2) : m.group(3);
            return base instanceof Map<?, ?> map && map.containsKey(key);
        }
        return false;
    }

    /** The offset of the loop filter's {@code " if "}, outside quotes and brackets; -1 when there is none. */
    static int topLevelIf(String s) {
        return Scan.topLevel(s, 0, " if ");
    }
}
