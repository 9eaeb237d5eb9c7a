#!/usr/bin/env bash
# Set up astrometry_query on a fresh Debian/Ubuntu machine and solve the
# bundled example image offline.  Installs Debian's astrometry.net with the
# Tycho-2 index files, then this package with its test dependencies.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
DEBS="astrometry.net astrometry-data-tycho2-10-19-littleendian astrometry-data-tycho2-07-littleendian
      astrometry-data-tycho2-08-littleendian astrometry-data-tycho2-09-littleendian"
missing=""
for p in $DEBS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
PY=${PYTHON:-python3}
# Debian's own Python refuses pip installs without this (PEP 668).
export PIP_BREAK_SYSTEM_PACKAGES=1
$PY -m pip install -q --disable-pip-version-check -e ".[test]"
if [ "${1:-}" != "--no-demo" ]; then
  $PY -m astrometry_query.cli demo
fi
