#!/usr/bin/env bash
# Builds this example against the installed Lockstep artifacts and runs it: a LangChain4j ChatModel backed by the
# in-process engine answers on the bundled model. Run `./mvnw -B install` in the repository root first (CI does).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/bin/find-jdk25.sh"
lockstep_find_jdk25
cd "$here"
"$root/mvnw" -B -q package
deps=$(cat target/dependencies.txt)
out=$("$JAVA_HOME/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
  -cp "target/classes:$deps" dev.lockstep.examples.Chat "$root/models/kjv-qwen3moe")
if [ -z "$out" ]; then
  echo "example: the ChatModel answered nothing" >&2
  exit 1
fi
echo "example: LangChain4j ChatModel on Lockstep answered: $out" >&2
