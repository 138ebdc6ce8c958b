#!/usr/bin/env bash
# Runs every C test binary in $1, then once more each under valgrind
# (memcheck; any error fails); runs the binaries after --expect-deadlock
# (built with the 2019 protocol), which pass only if their watchdog reports
# a deadlock; compiles the header-compatibility units after --; and ends
# with the line "N passed, N failed".
set -u
build=$1; shift
expect_deadlock=()
if [ "${1:-}" = "--expect-deadlock" ]; then
  shift
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do expect_deadlock+=("$1"); shift; done
fi
[ "${1:-}" = "--" ] && shift
cc=${CC:-cc}
passed=0; failed=0

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

for t in "$build"/*; do
  [ -x "$t" ] && [ -f "$t" ] || continue
  name=$(basename "$t")
  if "$t" > "$build/$name.log" 2>&1; then pass "$name"; else fail "$name"; cat "$build/$name.log"; fi
done

if command -v valgrind >/dev/null 2>&1; then
  for t in "$build"/*; do
    [ -x "$t" ] && [ -f "$t" ] || continue
    name=$(basename "$t")
    # Tests that measure or stress many threads opt out by name.
    case "$name" in *_stress*) continue;; esac
    # valgrind runs one thread at a time; its default hand-over lets a
    # thread that never blocks (a vCPU whose guest computes) keep the CPU
    # for seconds while the test's own thread waits to observe it.
    # --fair-sched hands over in FIFO order.
    if VMM_RS_UNDER_VALGRIND=1 valgrind -q --fair-sched=try --error-exitcode=99 \
         --leak-check=full --errors-for-leak-kinds=definite "$t" > "$build/$name.vg.log" 2>&1; then
      pass "valgrind:$name"
    else
      fail "valgrind:$name"; cat "$build/$name.vg.log"
    fi
  done
else
  fail "valgrind (not installed)"
fi

# Exit code 3 is the watchdog's: the deadlock was seen. Anything else
# (including a pass) means the test cannot tell the old protocol from the
# new one.
for t in "${expect_deadlock[@]}"; do
  name="legacy:$(basename "$t")"
  timeout 60 "$t" > "$t.log" 2>&1
  rc=$?
  if [ "$rc" -eq 3 ] && grep -q WATCHDOG "$t.log"; then
    pass "$name (deadlock reported, as expected)"
  else
    fail "$name (expected the watchdog to report a deadlock, exit $rc)"; cat "$t.log"
  fi
done

for src in "$@"; do
  name=$(basename "$src" .c)
  if $cc -std=c11 -Wall -Wextra -Werror -pedantic -Iinclude -c -o /dev/null "$src" 2> "$build/$name.log"; then
    pass "$name"
  else
    fail "$name"; cat "$build/$name.log"
  fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
