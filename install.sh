#!/usr/bin/env bash
# Set up astrometry_query on a fresh Debian/Ubuntu machine and solve the
# bundled example image offline.
#
#   bash install.sh            # install, then solve the example
#   bash install.sh --no-demo  # install only
#
# 1. Debian's astrometry.net and the Tycho-2 index files, and chromium for the
#    web page tests (apt-get; sudo when not root; skipped when installed).
# 2. This package with its test dependencies into the active virtual or conda
#    environment, or, when none is active, into ./.venv (created here).
#    Never into the system Python.  test.sh uses the same environment.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
. scripts/python-env.sh

DEBS="astrometry.net astrometry-data-tycho2-10-19-littleendian astrometry-data-tycho2-07-littleendian
      astrometry-data-tycho2-08-littleendian astrometry-data-tycho2-09-littleendian"
BASE_PY=${PYTHON:-python3}
if [ ! -x "$PY" ] && ! "$BASE_PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  DEBS="$DEBS python3-venv"     # Debian splits venv/ensurepip out of python3
fi
missing=""
for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "Installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
# Debian's chromium, for the tests of the server's web pages (Ubuntu has it
# only as a snap: those tests then skip, saying why).
if ! dpkg -s chromium >/dev/null 2>&1 && apt-cache show chromium 2>/dev/null | grep -q '^Filename:'; then
  echo "Installing Debian's chromium (for the web page tests)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi

if [ ! -x "$PY" ]; then
  echo "No virtual or conda environment is active: creating one in $ENV_DIR"
  "$BASE_PY" -m venv "$ENV_DIR"
fi
echo "Installing astrometry_query[test] into $ENV_DIR"
"$PY" -m pip install -q --disable-pip-version-check --upgrade pip
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"

if [ "${1:-}" != "--no-demo" ]; then
  "$PY" -m astrometry_query.cli demo
fi
case "$ENV_DIR" in
  "$(pwd)/.venv") echo "Done. Run the tests with: bash test.sh   (or: . .venv/bin/activate)" ;;
esac
