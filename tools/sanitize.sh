#!/usr/bin/env bash
# Build fastconv's Cython kernels with AddressSanitizer + UndefinedBehaviorSanitizer
# (FASTCONV_SANITIZE=1, which also turns on Cython's bounds/wraparound/initialisation
# checks) in a copy of the tree, and run the test suite and the bad-input suite there.
#
#   tools/sanitize.sh                 # the default test run (not the slow tests)
#   tools/sanitize.sh tests/test_bad_input.py -k nan   # any pytest arguments
#
# The copy goes to $FASTCONV_SANITIZE_DIR (default /tmp/fc-asan): the in-place .so files
# of the working tree are never touched. Every sanitizer report, from this process or
# any subprocess a test starts, is written under $DEST/sanitizer-logs; the script fails
# if pytest fails or if any report was written. Numba kernels are not instrumented.
# allocator_may_return_null=1 keeps an impossible allocation a MemoryError, as without ASan.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${FASTCONV_SANITIZE_DIR:-/tmp/fc-asan}"
PYTHON="${PYTHON:-python}"
CC_FOR_RUNTIME="${CC:-gcc}"

case "$DEST" in /|"$SRC"|"$SRC"/*) echo "refusing to use $DEST" >&2; exit 2;; esac
rm -rf "$DEST"
mkdir -p "$DEST"
tar -C "$SRC" --exclude=./.git --exclude=./build --exclude='*.so' --exclude=__pycache__ \
    --exclude=.hypothesis --exclude=.pytest_cache -cf - . | tar -C "$DEST" -xf -

cd "$DEST"
FASTCONV_SANITIZE=1 "$PYTHON" setup.py build_ext --inplace --force >build.log 2>&1 \
    || { tail -40 build.log; echo "sanitizer build failed (log: $DEST/build.log)" >&2; exit 1; }
grep -q -- "-fsanitize=address" build.log || { echo "build did not use -fsanitize" >&2; exit 1; }

LOGS="$DEST/sanitizer-logs"
mkdir -p "$LOGS"
# Python is not instrumented, so the ASan runtime must be loaded first. Python's own
# allocations "leak" by design: leak detection stays off.
export LD_PRELOAD="$($CC_FOR_RUNTIME -print-file-name=libasan.so) $($CC_FOR_RUNTIME -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=0:log_path=$LOGS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$LOGS/ubsan"
export PYTHONPATH="$DEST"
export FASTCONV_SANITIZED=1  # lets tests skip what cannot run under ASan (e.g. > 8 GB inputs)

status=0
"$PYTHON" -c "import fastconv._ext._pooling as p, sys; assert p.__file__.startswith('$DEST'), p.__file__; \
from fastconv._ext import _build_info as b; assert 'sanitize' in b.BUILD_FLAGS, b.BUILD_FLAGS; print(b.BUILD_FLAGS)" \
    || exit 1
if [ "$#" -eq 0 ]; then
    set -- tests
fi
"$PYTHON" -m pytest -q -p no:cacheprovider -m "not slow" "$@" || status=$?

# Reports are errors; "failed to allocate" warnings come from the tests of impossible allocations.
PATTERN="ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer"
report_files=$(grep -l -E "$PATTERN" "$LOGS"/* 2>/dev/null || true)
reports=$(printf "%s" "$report_files" | grep -c . || true)
if [ "$reports" -ne 0 ]; then
    echo "=== $reports sanitizer report(s) ===" >&2
    for f in $report_files; do
        echo "--- $f" >&2; grep -v "failed to allocate" "$f" | head -60 >&2
    done
    status=1
fi
echo "sanitizer run: pytest exit $status, $reports sanitizer report(s); tree $DEST"
exit "$status"
