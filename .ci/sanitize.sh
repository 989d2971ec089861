#!/usr/bin/env bash
# CI reliability checks: AddressSanitizer + UndefinedBehaviorSanitizer and valgrind.
#
#   (a) C++ kernel tests and bin-reduction tests built with -fsanitize=address,undefined
#       (FASTPOOL_SANITIZE=ON) in build/asan, run with leak detection.
#   (b) The Python extension built with the same sanitizers (build dir build/asan-py)
#       and installed into a throwaway venv (build/asan-venv, --system-site-packages so
#       numpy/torch/pytest/hypothesis are visible); the normally installed fastpool is
#       never touched. The whole pytest suite runs with libasan preloaded.
#   (c) valgrind memcheck on a short run of the normal (non-sanitized, Release) C++
#       kernel tests and bin-reduction tests in build/valgrind.
#
# Every stage runs even if an earlier one fails; the summary at the end has one line
# per stage and the script exits non-zero if any stage failed. Any sanitizer report
# (also from subprocesses the tests start) or any valgrind error is a failure: the
# sanitizers abort at the first error (-fno-sanitize-recover=all, halt_on_error=1) and
# their reports are also searched for in the logs, so a report is never missed even if
# the exit status were lost.
#
# Environment knobs: PYTHON (interpreter, default python), JOBS (build jobs, default 2),
# KERNEL_CASES (ASan kernel-test cases, default 400), VALGRIND_CASES (default 400,
# about 25 s), BIN_CASES (ASan bin-test problems, default 40), BIN_VALGRIND_CASES
# (default 10, about 40 s), PYTEST_ARGS (extra pytest arguments, e.g. "-x" or
# "tests/test_max_pool.py").
#
# Blind spots, by construction of the tools:
#  - GCC's ASan does not check masked vector loads/stores or gathers (vmaskmov,
#    AVX-512 masked loads): a masked load past the end of a buffer goes unreported.
#    valgrind does check AVX2 masked accesses lane by lane, but valgrind has no
#    AVX-512 (its virtual CPU reports none), so stage (c) covers the scalar and AVX2
#    paths only, and nothing here checks the AVX-512 path's masked accesses.
#  - Output buffers >= 1 MiB come from fastpool's reuse pool, so ASan cannot see a
#    use-after-free of such a buffer while it sits in the pool.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PYTHON=${PYTHON:-python}
JOBS=${JOBS:-2}
KERNEL_CASES=${KERNEL_CASES:-400}
VALGRIND_CASES=${VALGRIND_CASES:-400}
BIN_CASES=${BIN_CASES:-40}
BIN_VALGRIND_CASES=${BIN_VALGRIND_CASES:-10}
PYTEST_ARGS=${PYTEST_ARGS:-}
LOGS=$ROOT/build/sanitize-logs
VENV=$ROOT/build/asan-venv

START=$SECONDS
declare -a SUMMARY=()
STATUS=0

rm -rf "$LOGS"
mkdir -p "$LOGS"

say() { printf '\n=== %s\n' "$*"; }
elapsed() { printf '%dm%02ds' $(((SECONDS - $1) / 60)) $(((SECONDS - $1) % 60)); }
result() {  # result PASS|FAIL "text"
  SUMMARY+=("$1  $2")
  printf '%s  %s\n' "$1" "$2"
  [ "$1" = PASS ] || STATUS=1
}
# Sanitizer reports in a log: the first line of each (ASan/LSan "ERROR:" headers,
# UBSan "runtime error:" lines). Reports go to stderr: GCC's UBSan runtime ignores
# log_path when it runs next to ASan, so stderr is the one place both write to.
SAN_PATTERN='ERROR: (Address|Leak)Sanitizer|Sanitizer: CHECK failed|runtime error:|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer'
# (pytest -v prints the test id on the same line as a report that follows it: cut it.)
sanitizer_reports() { grep -aE "$SAN_PATTERN" "$1" | sed -E 's/^tests\/[^ ]+ //' | sort | uniq -c | sort -rn; }

ASAN_LIB=$(gcc -print-file-name=libasan.so)
if [ ! -e "$ASAN_LIB" ]; then
  echo "libasan.so not found (gcc -print-file-name=libasan.so gave '$ASAN_LIB')" >&2
  exit 2
fi
# libstdc++ is preloaded too: python does not link it, so without it ASan cannot find
# the real __cxa_throw when it starts, and the first C++ exception (e.g. a geometry
# error that becomes ValueError) dies with "AddressSanitizer: CHECK failed:
# asan_interceptors.cpp:320 ((__interception::real___cxa_throw)) != (0)". A tool
# limitation, not a fastpool error.
PRELOAD="$ASAN_LIB $(gcc -print-file-name=libstdc++.so)"
# allocator_may_return_null=1: an impossible allocation (tests ask numpy or fastpool for
# terabytes and expect MemoryError) returns NULL as glibc's malloc does, instead of
# ASan aborting with "allocation-size-too-big". Memory errors are still reported.
ASAN_COMMON=allocator_may_return_null=1
echo "sanitize.sh: $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- cpp src python CMakeLists.txt 2>/dev/null || echo ' + uncommitted changes'), $(gcc --version | head -1), $(nproc) CPUs"

# ------------------------------------------------------------------ (a) ASan C++ tests
say "(a) C++ kernel tests with ASan + UBSan (build/asan, $KERNEL_CASES cases)"
t=$SECONDS
if cmake -S . -B build/asan -DFASTPOOL_BUILD_PYTHON=OFF -DFASTPOOL_BUILD_TESTS=ON \
      -DFASTPOOL_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$LOGS/a-build.log" 2>&1 &&
   cmake --build build/asan -j "$JOBS" >>"$LOGS/a-build.log" 2>&1; then
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1:$ASAN_COMMON \
    timeout 600 build/asan/cpp/fastpool_kernel_tests "$KERNEL_CASES" 2>&1 | tee "$LOGS/a-run.log"
  rc=${PIPESTATUS[0]}
  counts=$(grep -m1 'geometries x' "$LOGS/a-run.log" || echo 'no result line')
  reports="no sanitizer errors"
  if [ -n "$(sanitizer_reports "$LOGS/a-run.log")" ]; then
    reports="SANITIZER ERRORS (full reports above and in $LOGS/a-run.log)"
    sanitizer_reports "$LOGS/a-run.log"
  fi
  if [ "$rc" -eq 0 ] && [ "$reports" = "no sanitizer errors" ]; then
    result PASS "(a) ASan+UBSan C++ kernel tests: $counts; $reports ($(elapsed $t))"
  else
    result FAIL "(a) ASan+UBSan C++ kernel tests: exit $rc; $counts; $reports ($(elapsed $t))"
  fi
else
  tail -n 40 "$LOGS/a-build.log"
  result FAIL "(a) ASan+UBSan C++ kernel tests: build failed (see $LOGS/a-build.log)"
fi

# ------------------------------------------------------------------ (a2) ASan C++ bin tests
say "(a2) C++ bin-reduction tests with ASan + UBSan (build/asan, $BIN_CASES cases)"
t=$SECONDS
if [ -x build/asan/cpp/fastpool_bin_tests ]; then
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1:$ASAN_COMMON \
    timeout 600 build/asan/cpp/fastpool_bin_tests "$BIN_CASES" 2>&1 | tee "$LOGS/a2-run.log"
  rc=${PIPESTATUS[0]}
  counts=$(grep -m1 'bin problems' "$LOGS/a2-run.log" || echo 'no result line')
  reports="no sanitizer errors"
  if [ -n "$(sanitizer_reports "$LOGS/a2-run.log")" ]; then
    reports="SANITIZER ERRORS (full reports above and in $LOGS/a2-run.log)"
    sanitizer_reports "$LOGS/a2-run.log"
  fi
  if [ "$rc" -eq 0 ] && [ "$reports" = "no sanitizer errors" ]; then
    result PASS "(a2) ASan+UBSan C++ bin tests: $counts; $reports ($(elapsed $t))"
  else
    result FAIL "(a2) ASan+UBSan C++ bin tests: exit $rc; $counts; $reports ($(elapsed $t))"
  fi
else
  result FAIL "(a2) ASan+UBSan C++ bin tests: build/asan/cpp/fastpool_bin_tests was not built (see $LOGS/a-build.log)"
fi

# ------------------------------------------------------------------ (b) ASan Python suite
say "(b) pytest suite against the ASan + UBSan extension (build/asan-py, venv $VENV)"
t=$SECONDS
b_ok=1
rm -rf "$VENV"   # a fresh venv each run (3 s): nothing stale from an older interpreter
"$PYTHON" -m venv --system-site-packages "$VENV" >"$LOGS/b-build.log" 2>&1 || b_ok=0
# --no-build-isolation: the build requirements (scikit-build-core, pybind11) come from
# the system site-packages; --ignore-installed --no-deps: pip only adds fastpool to the
# venv and never uninstalls or replaces the system's fastpool (or anything else);
# --no-cache-dir: a sanitized wheel never lands in (or comes from) pip's wheel cache.
# RelWithDebInfo: -O2 -g, so reports have file:line (Release would also strip the module).
if [ $b_ok = 1 ] &&
   "$VENV/bin/python" -m pip install --no-build-isolation --no-deps --ignore-installed \
      --no-cache-dir --disable-pip-version-check -Cbuild-dir=build/asan-py \
      -Ccmake.define.FASTPOOL_SANITIZE=ON -Ccmake.build-type=RelWithDebInfo . \
      >>"$LOGS/b-build.log" 2>&1; then
  core=$(LD_PRELOAD="$PRELOAD" ASAN_OPTIONS=detect_leaks=0 "$VENV/bin/python" -c \
         "import fastpool._core as c; print(c.__file__)" 2>>"$LOGS/b-build.log")
  case "$core" in
    "$VENV"/*) ;;
    *) echo "the venv imports fastpool from '$core', not from $VENV" >&2; b_ok=0 ;;
  esac
  if [ $b_ok = 1 ] && ! readelf -d "$core" | grep -q 'NEEDED.*libasan'; then
    echo "$core is not linked against libasan: the sanitizer option did not apply" >&2
    b_ok=0
  fi
else
  tail -n 40 "$LOGS/b-build.log"
  b_ok=0
fi
if [ $b_ok = 1 ]; then
  echo "extension: $core"
  echo "pytest -v output goes to $LOGS/b-run.log; running the whole suite ..."
  # detect_leaks=0: CPython itself does not free everything at exit.
  # --capture=sys: pytest captures Python-level output only, so a sanitizer report
  # (written to file descriptor 2 by C code) reaches the log even though the
  # interpreter aborts; the default fd capture would swallow it with the process.
  # -v: the log then names the test that was running when a report aborted the run.
  # Reports of the subprocesses tests/test_config.py starts fail those tests, whose
  # messages carry the child's stderr into the log.
  # -p no:cacheprovider: leave the normal run's .pytest_cache alone.
  # -m "not slow": the 8.6 GB huge-array test runs in the normal suite, not under ASan.
  # tests/test_memory.py measures RSS, which ASan's quarantine of freed memory inflates
  # by design; leaks are checked by LeakSanitizer in (a) and valgrind in (c).
  # shellcheck disable=SC2086
  LD_PRELOAD="$PRELOAD" ASAN_OPTIONS=detect_leaks=0:$ASAN_COMMON UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    timeout 840 "$VENV/bin/python" -m pytest -v -p no:cacheprovider --capture=sys -m "not slow" \
      --ignore=tests/test_memory.py $PYTEST_ARGS \
    >"$LOGS/b-run.log" 2>&1
  rc=$?
  counts=$(grep -aE '^=+ .*(passed|failed|error).* in [0-9.]+s' "$LOGS/b-run.log" | tail -1 | tr -d '=' |
           sed 's/^ *//; s/ *$//')
  n_run=$(grep -acE ' (PASSED|FAILED|SKIPPED|XFAIL|XPASS|ERROR) +\[' "$LOGS/b-run.log")
  if [ "$rc" -eq 124 ]; then
    counts="TIMEOUT: pytest stopped after 14 minutes, $n_run tests had run"
  elif [ -z "$counts" ]; then
    counts="no pytest summary (interpreter aborted after $n_run tests)"
  fi
  reports="no sanitizer errors"
  if [ -n "$(sanitizer_reports "$LOGS/b-run.log")" ]; then
    reports="SANITIZER ERRORS (see above and $LOGS/b-run.log)"
    echo "--- sanitizer reports (count, first line):"
    sanitizer_reports "$LOGS/b-run.log"
    first=$(grep -anE "$SAN_PATTERN" "$LOGS/b-run.log" | head -1 | cut -d: -f1)
    test_id=$(head -n "$first" "$LOGS/b-run.log" | grep -a '^tests/.*::' | tail -1 | cut -d' ' -f1)
    echo "--- test running at the first report: $test_id"
    echo "--- first report (up to 40 lines):"
    tail -n "+$first" "$LOGS/b-run.log" | head -n 40 | sed -E '1s/^tests\/[^ ]+ //'
    echo "--- rerun: LD_PRELOAD='$PRELOAD' ASAN_OPTIONS=detect_leaks=0:$ASAN_COMMON" \
         "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $VENV/bin/python -m pytest -p no:cacheprovider --capture=sys '$test_id'"
  elif [ "$rc" -ne 0 ]; then
    tail -n 60 "$LOGS/b-run.log"
  fi
  if [ "$rc" -eq 0 ] && [ "$reports" = "no sanitizer errors" ]; then
    result PASS "(b) pytest under ASan+UBSan: $counts; $reports ($(elapsed $t))"
  else
    result FAIL "(b) pytest under ASan+UBSan: exit $rc; $counts; $reports ($(elapsed $t))"
  fi
else
  result FAIL "(b) pytest under ASan+UBSan: sanitized extension could not be built/installed (see $LOGS/b-build.log)"
fi

# ------------------------------------------------------------------ (c) valgrind
say "(c) valgrind memcheck on the normal C++ kernel tests (build/valgrind, $VALGRIND_CASES cases)"
t=$SECONDS
if ! command -v valgrind >/dev/null; then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends valgrind; } \
    >"$LOGS/c-apt.log" 2>&1 || tail -n 20 "$LOGS/c-apt.log"
fi
if ! command -v valgrind >/dev/null; then
  result FAIL "(c) valgrind: valgrind is not installed and apt-get could not install it"
# The normal Release build, as .ci/run builds it; -g only adds line numbers to the
# reports (GCC's code generation does not depend on -g).
elif cmake -S . -B build/valgrind -DFASTPOOL_BUILD_PYTHON=OFF -DFASTPOOL_BUILD_TESTS=ON \
        -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS=-g >"$LOGS/c-build.log" 2>&1 &&
     cmake --build build/valgrind -j "$JOBS" >>"$LOGS/c-build.log" 2>&1; then
  # Definite leaks count as errors; libgomp's thread pool is only "possibly lost"/reachable.
  timeout 900 valgrind --tool=memcheck --error-exitcode=1 --track-origins=yes \
      --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
      build/valgrind/cpp/fastpool_kernel_tests "$VALGRIND_CASES" 2>&1 | tee "$LOGS/c-run.log"
  rc=${PIPESTATUS[0]}
  counts=$(grep -m1 'geometries x' "$LOGS/c-run.log" || echo 'no result line')
  errs=$(grep -m1 -oE 'ERROR SUMMARY: [0-9]+ errors' "$LOGS/c-run.log" || echo 'no ERROR SUMMARY')
  if [ "$rc" -eq 0 ] && [ "$errs" = "ERROR SUMMARY: 0 errors" ]; then
    result PASS "(c) valgrind memcheck: $counts; no errors ($errs) ($(elapsed $t))"
  else
    why=
    if grep -q 'Unrecognised instruction' "$LOGS/c-run.log"; then
      # valgrind's virtual CPU has no AVX-512 (cpuid/xgetbv say so), so this is what an
      # AVX2-only CPU would do: code built for a newer ISA ran before the CPU check.
      why="; SIGILL: an instruction valgrind's CPU (no AVX-512) lacks was executed, see the stack above"
    fi
    result FAIL "(c) valgrind memcheck: exit $rc; $counts; $errs$why ($(elapsed $t))"
  fi
else
  tail -n 40 "$LOGS/c-build.log"
  result FAIL "(c) valgrind memcheck: build failed (see $LOGS/c-build.log)"
fi

# ------------------------------------------------------------------ (c2) valgrind, bin tests
say "(c2) valgrind memcheck on the normal C++ bin-reduction tests (build/valgrind, $BIN_VALGRIND_CASES cases)"
t=$SECONDS
if ! command -v valgrind >/dev/null; then
  result FAIL "(c2) valgrind (bin tests): valgrind is not installed"
elif [ -x build/valgrind/cpp/fastpool_bin_tests ]; then
  timeout 900 valgrind --tool=memcheck --error-exitcode=1 --track-origins=yes \
      --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
      build/valgrind/cpp/fastpool_bin_tests "$BIN_VALGRIND_CASES" 2>&1 | tee "$LOGS/c2-run.log"
  rc=${PIPESTATUS[0]}
  counts=$(grep -m1 'bin problems' "$LOGS/c2-run.log" || echo 'no result line')
  errs=$(grep -m1 -oE 'ERROR SUMMARY: [0-9]+ errors' "$LOGS/c2-run.log" || echo 'no ERROR SUMMARY')
  if [ "$rc" -eq 0 ] && [ "$errs" = "ERROR SUMMARY: 0 errors" ]; then
    result PASS "(c2) valgrind memcheck (bin tests): $counts; no errors ($errs) ($(elapsed $t))"
  else
    result FAIL "(c2) valgrind memcheck (bin tests): exit $rc; $counts; $errs ($(elapsed $t))"
  fi
else
  result FAIL "(c2) valgrind memcheck (bin tests): build/valgrind/cpp/fastpool_bin_tests was not built (see $LOGS/c-build.log)"
fi

# ------------------------------------------------------------------ summary
say "summary ($(elapsed $START) total; logs in $LOGS)"
printf '%s\n' "${SUMMARY[@]}"
if [ $STATUS -eq 0 ]; then echo "sanitize.sh: all checks passed"; else echo "sanitize.sh: FAILED"; fi
exit $STATUS
