#!/usr/bin/env bash
# Set up a fresh Debian 12 machine (tests/setup.sh), then lint, type-check and run every test.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
uv=.tools/bin/uv
"$uv" run --frozen ruff check daemon tests
"$uv" run --frozen mypy
# Four workers on two cores: most tests wait on real servers and processes, not on the CPU.
"$uv" run --frozen pytest -n 4 "$@"
