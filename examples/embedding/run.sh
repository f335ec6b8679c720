#!/usr/bin/env bash
# Builds this example against the installed Lockstep artifacts and runs it on the class path and on the
# module path; both must print the same greedy continuation as the CLI. Run `./mvnw -B install` in the
# repository root first (CI does).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/bin/find-jdk25.sh"
lockstep_find_jdk25
cd "$here"
"$root/mvnw" -B -q package
deps=$(cat target/dependencies.txt)
model="$root/models/kjv-qwen3moe"
java="$JAVA_HOME/bin/java"
expected="In the beginning God created"

echo "example: class path" >&2
cp_out=$("$java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
  -cp "target/classes:$deps" dev.lockstep.examples.Generate "$model")
echo "example: module path" >&2
# On the module path no --add-modules is needed: dev.lockstep.kernels requires jdk.incubator.vector.
mp_out=$("$java" --enable-native-access=ai.djl.tokenizers,ai.djl.api,com.sun.jna \
  -p "target/classes:$deps" -m dev.lockstep.examples/dev.lockstep.examples.Generate "$model")

if [ "$cp_out" != "$mp_out" ]; then
  echo "example: class-path and module-path runs differ" >&2
  exit 1
fi
cli_out=$("$root/lockstep" generate --model "$model" --prompt "$expected" -n 48 --temp 0 --threads 2 2>/dev/null)
if [ "$cp_out" != "$cli_out" ]; then
  printf 'example: output differs from the CLI:\n%s\n---\n%s\n' "$cp_out" "$cli_out" >&2
  exit 1
fi
echo "example: class path and module path print the CLI's greedy continuation (${#cp_out} characters)" >&2
