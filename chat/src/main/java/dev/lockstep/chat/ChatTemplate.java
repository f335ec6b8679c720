package dev.lockstep.chat;

import com.hubspot.jinjava.Jinjava;
import com.hubspot.jinjava.JinjavaConfig;
import com.hubspot.jinjava.LegacyOverrides;
import com.hubspot.jinjava.interpret.JinjavaInterpreter;
import com.hubspot.jinjava.interpret.RenderResult;
import com.hubspot.jinjava.interpret.TemplateError;
import com.hubspot.jinjava.lib.filter.Filter;
import com.hubspot.jinjava.lib.fn.ELFunctionDefinition;
import com.hubspot.jinjava.lib.tag.Tag;
import com.hubspot.jinjava.tree.Node;
import com.hubspot.jinjava.tree.TagNode;
import com.hubspot.jinjava.el.JinjavaInterpreterResolver;
import java.time.Clock;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import jinjava.javax.el.CompositeELResolver;

/**
 * A Hugging Face chat template ({@code chat_template} of tokenizer_config.json), rendered the way transformers'
 * {@code apply_chat_template} renders it: Jinja with {@code trim_blocks} and {@code lstrip_blocks}, loop controls,
 * the {@code {% generation %}} tag, {@code raise_exception(msg)}, {@code strftime_now(fmt)}, {@code tojson} as
 * Python's {@code json.dumps(ensure_ascii=False)} (its spacing, {@code indent}, {@code separators},
 * {@code sort_keys}), Python's string and dict methods, and the sandbox's refusal of list/dict mutation. The engine
 * is Jinjava (HubSpot's, on Maven Central) configured for that; the renderings of 69 real templates are checked
 * against Python jinja2's ({@code ChatTemplateGoldenTest}).
 *
 * <p>Thread-safe: each render has its own interpreter. Values are plain Java: Map, List, String, Number, Boolean,
 * null ({@link ChatValues} converts JSON).
 */
public final class ChatTemplate {
    private static final ThreadLocal<Clock> CLOCK = new ThreadLocal<>();
    private static final int MAX_OUTPUT_CHARS = 16 << 20;
    private static final String STRFTIME_DEFINED = "<function strftime_now>";

    private final String source;
    private final String normalized;
    private final Jinjava jinjava;
    private final Clock clock;

    private ChatTemplate(String source, Clock clock) {
        this.source = Objects.requireNonNull(source, "source");
        this.normalized = JinjaSource.normalize(source);
        this.clock = clock;
        CompositeELResolver resolver = new CompositeELResolver();
        resolver.add(new PythonMethods());
        resolver.add(JinjavaInterpreterResolver.DEFAULT_RESOLVER_READ_ONLY);
        JinjavaConfig config = JinjavaConfig.newBuilder()
                .withTrimBlocks(true)
                .withLstripBlocks(false) // done by JinjaSource.lstripBlocks, as Jinja2 does it
                .withElResolver(resolver)
                .withMaxOutputSize(MAX_OUTPUT_CHARS)
                .withIterateOverMapKeys(true) // Python: `for k in d` iterates the keys
                .withEnableRecursiveMacroCalls(true) // templates format JSON schemas with macros that call themselves
                .withMaxMacroRecursionDepth(64)
                .withLegacyOverrides(LegacyOverrides.newBuilder()
                        .withUsePyishObjectMapper(true)
                        .withKeepNullableLoopValues(true)
                        .withParseWhitespaceControlStrictly(true)
                        .withUseTrimmingForNotesAndExpressions(true)
                        .withUseNaturalOperatorPrecedence(true)
                        .withEvaluateMapKeys(true)
                        .build())
                .build();
        this.jinjava = new Jinjava(config);
        var globals = jinjava.getGlobalContext();
        globals.registerFunction(new ELFunctionDefinition("", "raise_exception", ChatTemplate.class, "raiseException", String.class));
        globals.registerFunction(new ELFunctionDefinition("", "strftime_now", ChatTemplate.class, "strftimeNow", String.class));
        globals.registerFilter(new ToJson());
        globals.registerFilter(new Items());
        globals.registerFilter(new Trim());
        globals.registerFilter(new Slice());
        globals.registerTag(new GenerationTag());
        globals.registerTag(new PythonForTag());
        globals.registerExpTest(new PythonIterable("iterable"));
        globals.registerExpTest(new PythonIterable("sequence"));
    }

    /** The template; nothing is checked until {@link #render}, which reports a syntax error with its line. */
    public static ChatTemplate of(String source) {
        return new ChatTemplate(source, Clock.systemDefaultZone());
    }

    /** The same template with {@code strftime_now} reading {@code clock} (tests, reproducible prompts). */
    public ChatTemplate withClock(Clock c) {
        return new ChatTemplate(source, c);
    }

    public String source() {
        return source;
    }

    /**
     * Renders {@code messages} (OpenAI/HF message maps: role, content, tool_calls, tool_call_id, name, reasoning_content)
     * with {@code tools} (null when the request has none, as HF passes it), {@code add_generation_prompt}, and extra
     * variables: the special tokens ({@code bos_token}, {@code eos_token}) and template kwargs such as
     * {@code enable_thinking}.
     *
     * @throws ChatTemplateException naming the template's own {@code raise_exception} message, a syntax error or an
     *                               unsupported construct, with its line
     */
    public String render(List<?> messages, List<?> tools, boolean addGenerationPrompt, Map<String, ?> variables) {
        Map<String, Object> bindings = new HashMap<>();
        variables.forEach((k, v) -> bindings.put(k, ChatValues.of(v)));
        bindings.put("messages", ChatValues.of(messages));
        bindings.put("tools", ChatValues.of(tools));
        bindings.put("add_generation_prompt", addGenerationPrompt);
        bindings.putIfAbsent("strftime_now", STRFTIME_DEFINED); // `strftime_now is defined` holds, as in HF
        java.util.Set<String> none = new java.util.HashSet<>();
        bindings.forEach((k, v) -> {
            if (v == null) {
                none.add(k); // Jinjava's context drops null values; `for x in tools` must still see that tools is None
            }
        });
        bindings.put(PythonForTag.NONE_NAMES, none);
        CLOCK.set(clock);
        RenderResult result;
        try {
            result = jinjava.renderForResult(normalized, bindings);
        } catch (ChatTemplateException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new ChatTemplateException("chat template: " + e.getMessage(), e);
        } finally {
            CLOCK.remove();
        }
        for (TemplateError error : result.getErrors()) {
            if (error.getSeverity() == TemplateError.ErrorType.FATAL) {
                throw failure(error);
            }
        }
        return result.getOutput();
    }

    private static ChatTemplateException failure(TemplateError error) {
        for (Throwable t = error.getException(); t != null; t = t.getCause()) {
            if (t instanceof ChatTemplateException c) {
                return new ChatTemplateException(c.getMessage() + " (chat template line " + error.getLineno() + ")", c);
            }
        }
        return new ChatTemplateException("chat template line " + error.getLineno() + ": " + error.getMessage(), error.getException());
    }

    /** {@code raise_exception(message)}: the template refuses the conversation; the message reaches the caller. */
    public static String raiseException(String message) {
        throw new ChatTemplateException(message);
    }

    /** {@code strftime_now(format)}: Python's {@code datetime.now().strftime(format)}. */
    public static String strftimeNow(String format) {
        Clock clock = CLOCK.get();
        return Strftime.format(LocalDateTime.now(clock != null ? clock : Clock.systemDefaultZone()), format);
    }

    /** {@code x | tojson(indent=None, separators=None, sort_keys=False)} as Python's json.dumps(ensure_ascii=False). */
    private static final class ToJson implements Filter {
        @Override
        public String getName() {
            return "tojson";
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            return filter(var, interpreter, (Object[]) args, Map.of());
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
            Object indent = kwargs.containsKey("indent") ? kwargs.get("indent") : args.length > 0 ? args[0] : null;
            Object separators = kwargs.get("separators");
            String items = null;
            String keys = null;
            if (separators instanceof List<?> pair && pair.size() == 2) {
                items = (String) pair.get(0);
                keys = (String) pair.get(1);
            }
            boolean sortKeys = Boolean.TRUE.equals(kwargs.get("sort_keys"));
            boolean ensureAscii = Boolean.TRUE.equals(kwargs.get("ensure_ascii"));
            return PythonJson.dumps(var, indent == null ? null : ((Number) indent).intValue(), items, keys, sortKeys, ensureAscii);
        }
    }

    /**
     * {@code x | trim(chars=None)}: Python's {@code str(x).strip(chars)}; a missing value (Jinja's Undefined, which
     * Jinjava cannot tell from None) trims to "" where Jinjava's filter printed "null".
     */
    private static final class Trim implements Filter {
        @Override
        public String getName() {
            return "trim";
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            if (var == null) {
                return "";
            }
            String chars = args.length > 0 ? args[0] : null;
            return PythonMethods.rstrip(PythonMethods.lstrip(PythonValues.str(var), chars), chars);
        }
    }

    /** {@code x|__lockstep_slice(start, stop)}: Python's {@code x[start:stop]} on a list or string (None: open end). */
    private static final class Slice implements Filter {
        @Override
        public String getName() {
            return JinjaSource.SLICE_FILTER;
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            return filter(var, interpreter, (Object[]) args, Map.of());
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, Object[] args, Map<String, Object> kwargs) {
            if (var == null) {
                throw new ChatTemplateException("TypeError: 'NoneType' object is not subscriptable");
            }
            int length = var instanceof CharSequence cs ? cs.length() : var instanceof List<?> l ? l.size() : -1;
            if (length < 0) {
                throw new ChatTemplateException("cannot slice a " + var.getClass().getSimpleName());
            }
            int start = bound(args.length > 0 ? args[0] : null, 0, length);
            int stop = bound(args.length > 1 ? args[1] : null, length, length);
            if (stop < start) {
                stop = start;
            }
            return var instanceof CharSequence cs ? cs.subSequence(start, stop).toString() : new ArrayList<>(((List<?>) var).subList(start, stop));
        }

        private static int bound(Object v, int none, int length) {
            if (v == null) {
                return none;
            }
            long i = ((Number) v).longValue();
            if (i < 0) {
                i += length;
            }
            return (int) Math.max(0, Math.min(length, i));
        }
    }

    /** {@code dict | items}: the (key, value) pairs. */
    private static final class Items implements Filter {
        @Override
        public String getName() {
            return "items";
        }

        @Override
        public Object filter(Object var, JinjavaInterpreter interpreter, String... args) {
            return var instanceof Map<?, ?> m ? PythonMethods.items(m) : new ArrayList<>();
        }
    }

    /** Jinja2's {@code iterable} and {@code sequence} tests: true for strings too (Python iterates a str). */
    private record PythonIterable(String getName) implements com.hubspot.jinjava.lib.exptest.ExpTest {
        @Override
        public boolean evaluate(Object var, JinjavaInterpreter interpreter, Object... args) {
            return var instanceof CharSequence || var instanceof Iterable<?> || var instanceof Map<?, ?> && getName.equals("iterable")
                    || var != null && var.getClass().isArray();
        }
    }

    /** HF's {@code {% generation %}...{% endgeneration %}} (marks assistant tokens for training masks): renders its body. */
    private static final class GenerationTag implements Tag {
        private static final long serialVersionUID = 1L;

        @Override
        public String getName() {
            return "generation";
        }

        @Override
        public String interpret(TagNode tagNode, JinjavaInterpreter interpreter) {
            StringBuilder out = new StringBuilder();
            for (Node child : tagNode.getChildren()) {
                out.append(child.render(interpreter));
            }
            return out.toString();
        }
    }
}
