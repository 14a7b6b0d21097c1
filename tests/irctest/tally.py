"""Counts an irctest run (plaza_tally's JSON) by outcome and spec marker,
and holds the ratchet: exits 1 if fewer tests passed than PASSED records.

    python3 tally.py RESULTS.json PASSED_FILE PYTEST_STATUS
"""

import json
import sys
from collections import Counter


def main() -> int:
    results_path, ratchet_path, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        with open(results_path) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        print(f"irctest: no results ({e}); pytest exited with {status}", file=sys.stderr)
        return 1
    total = Counter(r["outcome"] for r in results.values())
    by_spec = Counter()
    for r in results.values():
        for spec in r["specs"] or ["(none)"]:
            by_spec[(spec, r["outcome"])] += 1
    print("irctest: %d passed, %d failed, %d skipped" % (total["passed"], total["failed"], total["skipped"]))
    for spec in sorted({s for s, _ in by_spec}):
        print(
            "  %-8s %4d passed %4d failed %4d skipped"
            % (spec, by_spec[(spec, "passed")], by_spec[(spec, "failed")], by_spec[(spec, "skipped")])
        )
    with open(ratchet_path) as f:
        floor = int(f.read().split()[0])
    if total["passed"] < floor:
        print(f"irctest: {total['passed']} passed, fewer than the {floor} that {ratchet_path} records", file=sys.stderr)
        for name, r in sorted(results.items()):
            if r["outcome"] == "failed":
                print(f"  failed: {name}", file=sys.stderr)
        return 1
    if total["passed"] > floor:
        print(f"irctest: more than the {floor} recorded: raise {ratchet_path} to {total['passed']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
