#!/usr/bin/env bash
# Create .venv if needed, install, build the docs site (strict: a broken link or reference fails), then run
# the whole test suite. Extra args go to pytest.
source "$(dirname "$0")/_venv.sh"
echo "==> mkdocs build --strict"
NO_MKDOCS_2_WARNING=1 mkdocs build --strict --quiet
exec python -m pytest "$@"
