package dev.lockstep.chat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Details of HF's rendering the golden templates do not all reach (expected strings from Python's jinja2 3.1.6). */
class ChatTemplateTest {
    private static String render(String template) {
        return ChatTemplate.of(template).render(List.of(), null, false, Map.of());
    }

    @Test
    void lstripBlocksStripsOnlyFromTheStartOfALine() {
        // jinja2: 'a: xy  zw' (the space after "a:" stays; {%+ keeps its indentation; a comment is stripped too)
        assertEquals("a: xy  zw", render("a: {% if true %}x{% endif %}\n  {% if true %}y{% endif %}\n  {%+ if true %}z{% endif %}\n  {# c #}w"));
    }

    @Test
    void raiseExceptionReachesTheCallerWithItsMessage() {
        ChatTemplateException e = assertThrows(ChatTemplateException.class, () -> render("{{ raise_exception('System role not supported') }}"));
        assertTrue(e.getMessage().startsWith("System role not supported"), e.getMessage());
    }

    @Test
    void tojsonSpacingIsPythons() {
        ChatTemplate t = ChatTemplate.of("{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ x | tojson(separators=(',', ':')) }}");
        String out = t.render(List.of(), null, false, Map.of("x", Map.of("a", List.of(1, 2.5, "é"))));
        assertEquals("{\"a\": [1, 2.5, \"é\"]}|{\n  \"a\": [\n    1,\n    2.5,\n    \"é\"\n  ]\n}|{\"a\":[1,2.5,\"é\"]}", out);
    }
}
