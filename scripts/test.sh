#!/usr/bin/env bash
# Create .venv if needed, install, run the whole test suite. Extra args go to pytest.
source "$(dirname "$0")/_venv.sh"
exec python -m pytest "$@"
