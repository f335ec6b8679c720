# Renders every template with jinja2 configured as HF transformers' apply_chat_template does, for fixed conversations.
import json, sys, os, glob, datetime
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.ext import Extension
from jinja2 import nodes

class AssistantTracker(Extension):
    tags = {"generation"}
    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)
    def _render(self, caller):
        return caller()

def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)

def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

FIXED = datetime.datetime(2026, 1, 2, 3, 4, 5)
def strftime_now(fmt):
    return FIXED.strftime(fmt)

def compile(src):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(src)

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name, e.g. Zürich"},
          "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}]
BASIC = [{"role": "system", "content": "You are a helpful assistant"}, {"role": "user", "content": "Hello"},
         {"role": "assistant", "content": "Hi there"}, {"role": "user", "content": "Who are you?"}]
NOSYS = BASIC[1:]
ROUND = [{"role": "system", "content": "You are a helpful assistant"}, {"role": "user", "content": "What is the weather in Zürich?"},
         {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich"}}}]},
         {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temperature\": 21}"}]
SCENARIOS = {
  "basic": dict(messages=BASIC, add_generation_prompt=True),
  "basic_no_prompt": dict(messages=BASIC, add_generation_prompt=False),
  "no_system": dict(messages=NOSYS, add_generation_prompt=True),
  "tools": dict(messages=BASIC, tools=TOOLS, add_generation_prompt=True),
  "tool_round_trip": dict(messages=ROUND, tools=TOOLS, add_generation_prompt=True),
  "thinking_off": dict(messages=NOSYS, add_generation_prompt=True, enable_thinking=False),
}
out = []
for path in sorted(glob.glob(sys.argv[1] + "/*.jinja")):
    name = os.path.basename(path)
    src = open(path, encoding="utf-8").read()
    for sname, kw in SCENARIOS.items():
        ctx = dict(kw); ctx.setdefault("tools", None)
        ctx.update(bos_token="<|bos|>", eos_token="<|eos|>")
        try:
            r = compile(src).render(**ctx)
            out.append({"template": name, "scenario": sname, "output": r})
        except Exception as e:
            out.append({"template": name, "scenario": sname, "error": type(e).__name__ + ": " + str(e)})
json.dump({"bos_token": "<|bos|>", "eos_token": "<|eos|>", "now": FIXED.isoformat(), "scenarios": SCENARIOS, "renders": out}, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False, indent=1)
print(len(out), sum(1 for o in out if "error" in o), "errors")
