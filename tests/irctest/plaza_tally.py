"""A pytest plugin (`-p plaza_tally`): writes each test's outcome and spec
markers to the JSON file PLAZA_TALLY names, for tally.py."""

import json
import os

SPECS = ("RFC1459", "RFC2812", "modern", "ircdocs", "IRCv3")
_outcomes: dict = {}


def pytest_runtest_logreport(report):
    entry = _outcomes.setdefault(
        report.nodeid,
        {"outcome": "passed", "specs": [k for k in SPECS if k in report.keywords]},
    )
    if report.failed:
        entry["outcome"] = "failed"
    elif report.skipped and entry["outcome"] != "failed":
        entry["outcome"] = "skipped"


def pytest_sessionfinish(session):
    path = os.environ.get("PLAZA_TALLY")
    if path and not hasattr(session.config, "workerinput"):
        with open(path, "w") as f:
            json.dump(_outcomes, f, indent=0, sort_keys=True)
