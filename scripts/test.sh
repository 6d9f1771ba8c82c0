#!/usr/bin/env bash
# Create .venv if needed, install, build the docs site (strict: a broken link or reference fails), then run
# the whole test suite. Extra args go to pytest.
source "$(dirname "$0")/_venv.sh"
echo "==> on $(python -c 'from runtimes.machine import machine_info, machine_summary; print(machine_summary(machine_info()))')"
echo "==> mkdocs build --strict"
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet
# two pytest-xdist workers (TEST_WORKERS=0 runs in this process): export, ONNX serialisation and graph passes
# are single-threaded, so a second worker uses the second core; a test file stays on one worker, and what
# tests share (exports, slim venvs) is built once per run for all workers (tests/run_shared.py); files start
# longest first (tests/conftest.py: LONGEST_FILES_FIRST), not by test count
exec python -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
