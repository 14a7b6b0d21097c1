#!/usr/bin/env bash
# Runs the IRC conformance suite irctest (progval/irctest, a copy in
# ../shared/irctest) against Plaza's IRC front end, with the selection
# irctest uses for servers without services, and fails if fewer tests pass
# than tests/irctest/PASSED records (a ratchet: raise it as Plaza improves).
#
#   scripts/irctest.sh            # run, compare, print the tally by spec
#   scripts/irctest.sh -k Join    # extra arguments go to pytest
#   PLAZA_SERVER=/tmp/old scripts/irctest.sh   # another build
#
# Needs python3 (a venv under target/ gets pytest from PyPI) and the suite:
# IRCTEST_DIR, or ../shared/irctest beside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
suite=${IRCTEST_DIR:-}
if [ -z "$suite" ]; then
  for d in "$root/../shared/irctest" /work/shared/irctest; do
    if [ -f "$d/conftest.py" ]; then suite=$(cd "$d" && pwd); break; fi
  done
fi
if [ -z "$suite" ] || [ ! -f "$suite/conftest.py" ]; then
  echo "scripts/irctest.sh: irctest not found (set IRCTEST_DIR, or put it in ../shared/irctest): IRC conformance NOT checked" >&2
  exit "${IRCTEST_MISSING_STATUS:-0}"
fi
venv=target/irctest-venv
if [ ! -x "$venv/bin/pytest" ] || [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$suite/requirements.txt" pytest-xdist
fi
[ -n "${PLAZA_SERVER:-}" ] || cargo build -q -p plaza-server --bin plaza-server
report=target/irctest-results.json
# As the Makefile runs ngIRCd, InspIRCd and the others without services.
markers='not services and not implementation-specific and not deprecated and not strict'
status=0
rm -f "$report"
(cd "$suite" && PLAZA_SERVER="${PLAZA_SERVER:-$root/target/debug/plaza-server}" PYTHONPATH="$root/tests/irctest" \
  PLAZA_TALLY="$root/$report" timeout 1200 "$root/$venv/bin/python" -m pytest -p no:cacheprovider \
  -p plaza_tally -q -n 4 --controller plaza_controller -m "$markers" "$@" \
  >"$root/target/irctest.log" 2>&1) || status=$?
echo "irctest: pytest's output is in target/irctest.log" >&2
python3 tests/irctest/tally.py "$report" tests/irctest/PASSED "$status"
