#!/usr/bin/env bash
# Run the test suite in the environment install.sh installed into (the active
# virtual/conda environment, else ./.venv).  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/python-env.sh
if [ ! -x "$PY" ]; then
  echo "No environment at $ENV_DIR: run 'bash install.sh' first." >&2
  exit 2
fi
exec "$PY" -m pytest tests "$@"
