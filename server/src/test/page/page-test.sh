#!/usr/bin/env bash
# The chat page in a real headless browser (Debian's chromium): `lockstep serve` on a free loopback port, the page
# opened with ?prompt=..., which sends it and streams the reply from /v1/completions into the page (PageTest.java drives
# chromium over the DevTools protocol); the page's text after the stream must equal what the same request gets
# without streaming (curl). CI runs it; it needs chromium
# (apt-get install chromium) and says so when it is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../../.." && pwd)
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "page-test: no chromium on PATH (Debian: apt-get install chromium)" >&2
  exit 1
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
"$root/lockstep" serve --port "$port" --threads 2 >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 120); do
  if curl -fs "http://127.0.0.1:$port/health" >/dev/null 2>&1; then break; fi
  sleep 1
done
curl -fs "http://127.0.0.1:$port/health" >/dev/null || { echo "page-test: server did not become ready" >&2; cat "$log" >&2; exit 1; }
prompt="In the beginning God created"
expected=$(curl -fs "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
  -d "{\"prompt\": \"$prompt\", \"max_tokens\": 48, \"temperature\": 0}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["text"], end="")')
url="http://127.0.0.1:$port/?prompt=$(python3 -c 'import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1]))' "$prompt")"
. "$root/bin/find-jdk25.sh"
lockstep_find_jdk25
got=$("$JAVA_HOME/bin/java" "$(dirname "$0")/PageTest.java" "$browser" "$url")
if [ "$got" != "$expected" ]; then
  printf 'page-test: the page shows\n%s\nbut the endpoint answers\n%s\n' "$got" "$expected" >&2
  exit 1
fi
echo "page-test: chromium streamed the reply into the page (${#got} characters, equal to /v1/completions)" >&2
