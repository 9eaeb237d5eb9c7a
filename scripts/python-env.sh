# Sourced by install.sh and test.sh: which Python environment astrometry_query lives in.
#
# The active environment when there is one (a virtualenv/venv, or a conda
# environment), else the project's own ./.venv, so that nothing is ever
# written into the system Python (Debian's is "externally managed", PEP 668).
# Sets ENV_DIR (the environment's prefix) and PY (its python).
if [ -n "${VIRTUAL_ENV:-}" ]; then
  ENV_DIR="$VIRTUAL_ENV"
elif [ -n "${CONDA_PREFIX:-}" ]; then
  ENV_DIR="$CONDA_PREFIX"
else
  ENV_DIR="$(pwd)/.venv"
fi
PY="$ENV_DIR/bin/python"
