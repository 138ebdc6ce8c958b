#!/usr/bin/env bash
# Runs every C test binary in $1, then once more each under valgrind
# (memcheck; any error fails); runs the binaries after --expect-deadlock
# (built with the 2019 protocol), which pass only if their watchdog reports
# a deadlock; compiles the header-compatibility units after -- (as C and
# as C++); and ends with the line "N passed, N failed". With
# VMM_RS_RUN_WITH set (an emulator such as "qemu-aarch64 -L
# /usr/aarch64-linux-gnu", for binaries built for another architecture)
# every test runs under it, and the valgrind pass is left out; with
# VMM_RS_NO_VALGRIND set (statically linked musl binaries, whose malloc
# valgrind cannot see) it is left out too.
set -u
build=$1; shift
expect_deadlock=()
if [ "${1:-}" = "--expect-deadlock" ]; then
  shift
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do expect_deadlock+=("$1"); shift; done
fi
[ "${1:-}" = "--" ] && shift
# CC, CXX and VMM_RS_RUN_WITH may be commands with arguments
# ("ccache gcc"); split on blanks.
read -r -a cc <<< "${CC:-cc}"
read -r -a cxx <<< "${CXX:-c++}"
read -r -a run_with <<< "${VMM_RS_RUN_WITH:-}"
passed=0; failed=0

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }

for t in "$build"/*; do
  [ -x "$t" ] && [ -f "$t" ] || continue
  name=$(basename "$t")
  if "${run_with[@]}" "$t" > "$build/$name.log" 2>&1; then pass "$name"; else fail "$name"; cat "$build/$name.log"; fi
done

if [ ${#run_with[@]} -gt 0 ]; then
  echo "(no valgrind pass: the tests ran under ${run_with[*]})"
elif [ -n "${VMM_RS_NO_VALGRIND:-}" ]; then
  echo "(no valgrind pass: $VMM_RS_NO_VALGRIND)"
elif command -v valgrind >/dev/null 2>&1; then
  # valgrind runs a process's threads one at a time, so the tests run
  # $VMM_RS_TEST_JOBS at once (default: one per CPU); results are
  # reported in order once all have finished.
  njobs=${VMM_RS_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
  vg_names=()
  for t in "$build"/*; do
    [ -x "$t" ] && [ -f "$t" ] || continue
    name=$(basename "$t")
    # Tests that measure or stress many threads opt out by name.
    case "$name" in *_stress*) continue;; esac
    vg_names+=("$name")
    rm -f "$build/$name.vg.rc"
    # valgrind's default hand-over lets a thread that never blocks (a
    # vCPU whose guest computes) keep the CPU for seconds while the
    # test's own thread waits to observe it. --fair-sched hands over in
    # FIFO order.
    (
      VMM_RS_UNDER_VALGRIND=1 valgrind -q --fair-sched=try --error-exitcode=99 \
        --leak-check=full --errors-for-leak-kinds=definite "$t" > "$build/$name.vg.log" 2>&1
      echo $? > "$build/$name.vg.rc"
    ) &
    while [ "$(jobs -rp | wc -l)" -ge "$njobs" ]; do wait -n; done
  done
  wait
  for name in ${vg_names[@]+"${vg_names[@]}"}; do
    if [ "$(cat "$build/$name.vg.rc" 2>/dev/null)" = 0 ]; then
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

# Each unit is compiled as C11 and as C++11 (the header is meant for
# both). A unit's " * cflags: ..." line adds flags; a header_reject_*
# unit passes only if it does not compile, for the reason its
# " * refused-by: ..." line names (text of the compiler's message; the
# source lines a compiler quotes are turned off, so that naming text in
# the header's source does not count).
for src in "$@"; do
  base=$(basename "$src" .c)
  read -r -a extra <<< "$(sed -n 's/^ \* cflags: //p' "$src")"
  for lang in c c++; do
    if [ $lang = c ]; then
      name=$base; compile=("${cc[@]}" -std=c11)
    else
      name="c++:$base"; compile=("${cxx[@]}" -x c++ -std=c++11)
    fi
    log="$build/$lang.$base.log"
    if "${compile[@]}" -Wall -Wextra -Werror -pedantic -fno-diagnostics-show-caret -Iinclude "${extra[@]}" \
         -c -o /dev/null "$src" > "$log" 2>&1; then
      compiled=1
    else
      compiled=0
    fi
    case "$base" in
      header_reject_*)
        reason=$(sed -n 's/^ \* refused-by: //p' "$src")
        if [ $compiled -eq 0 ] && [ -n "$reason" ] && grep -qF -- "$reason" "$log"; then
          pass "$name (refused: $reason)"
        else
          fail "$name (expected a compile error naming '$reason')"; cat "$log"
        fi;;
      *)
        if [ $compiled -eq 1 ]; then pass "$name"; else fail "$name"; cat "$log"; fi;;
    esac
  done
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
