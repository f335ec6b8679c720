# Sourced by ./lockstep and ./mvnw: sets JAVA_HOME to a JDK 25 (or newer).
# Order: $JAVA_HOME if it is 25+, else /usr/lib/jvm/temurin-25*, else any /usr/lib/jvm/*25*.
# On failure prints one line and returns 1.
lockstep_java_feature() {
  "$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | head -n 1
}
lockstep_find_jdk25() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    v=$(lockstep_java_feature "$JAVA_HOME")
    if [ -n "$v" ] && [ "$v" -ge 25 ] 2>/dev/null; then return 0; fi
  fi
  # Callers may run with globbing off (mvnw uses set -f): switch it on for the search only.
  case $- in *f*) lockstep_noglob=1; set +f ;; *) lockstep_noglob=0 ;; esac
  lockstep_found=
  for d in /usr/lib/jvm/temurin-25* /usr/lib/jvm/*-25-* /usr/lib/jvm/jdk-25*; do
    if [ -x "$d/bin/java" ] && [ -x "$d/bin/javac" ]; then lockstep_found=$d; break; fi
  done
  [ "$lockstep_noglob" = 1 ] && set -f
  if [ -n "$lockstep_found" ]; then JAVA_HOME=$lockstep_found; export JAVA_HOME; return 0; fi
  echo "lockstep: JDK 25 not found (JAVA_HOME=${JAVA_HOME:-unset} is not 25+, and no /usr/lib/jvm/temurin-25*); install JDK 25 or point JAVA_HOME at one" >&2
  return 1
}
