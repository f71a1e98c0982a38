"""The conformance suite's cluster and report.

The runtime binary is `$VSS_RUNTIME_BIN`. Without it the suite FAILS,
naming the variable; `VSS_CONFORMANCE_SKIP=1` is the only way to turn it
off, and then every scenario is reported as skipped (never as passed).
The scenarios are read from `client/conformance/` (or
`$VSS_CONFORMANCE_DIR`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import ProcessCluster, runtime_binary  # noqa: E402

DIR_VAR = "VSS_CONFORMANCE_DIR"
# How long a fresh cluster may take to agree on a routing table.
SETTLE_TIMEOUT = 60.0

REPO = Path(__file__).resolve().parents[4]
CONFORMANCE_DIR = Path(os.environ.get(DIR_VAR) or REPO / "client" / "conformance")

# Filled by the tests, printed at the end: (scenario, outcome, detail).
REPORT: list[tuple[str, str, str]] = []
COUNTS: list[str] = []


def load_suite() -> dict[str, Any]:
    path = CONFORMANCE_DIR / "scenarios.json"
    try:
        suite: dict[str, Any] = json.loads(path.read_text())
    except OSError as e:
        raise pytest.UsageError(
            f"cannot read the conformance scenarios at {path}: {e.strerror} "
            f"(set {DIR_VAR} to the folder holding scenarios.json)"
        ) from e
    if suite.get("format") != 1:
        raise pytest.UsageError(f"{path}: format {suite.get('format')!r}, this runner reads 1")
    return suite


@pytest.fixture(scope="session")
def suite() -> dict[str, Any]:
    return load_suite()


@pytest.fixture(scope="session")
def cluster(suite: dict[str, Any]) -> Iterator[ProcessCluster]:
    binary = runtime_binary()
    config = (CONFORMANCE_DIR / suite["config"]).read_text()
    c = ProcessCluster(binary, config, instances=int(suite["instances"])).start()
    try:
        c.settled(SETTLE_TIMEOUT)
        yield c
    finally:
        c.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    scenario = item.funcargs.get("scenario") if hasattr(item, "funcargs") else None
    if scenario is None:
        return
    name = scenario["name"]
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if report.passed:
            REPORT.append((name, "ok", ""))
        elif report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            REPORT.append((name, "SKIPPED", str(reason)))
        else:
            first = str(report.longreprtext).strip().splitlines()
            REPORT.append((name, "FAILED", first[-1] if first else ""))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    tr = terminalreporter
    tr.section("conformance (Python client)")
    for name, outcome, detail in REPORT:
        tr.write_line(f"{name} ... {outcome}" + (f": {detail}" if detail else ""))
    for line in COUNTS:
        tr.write_line(line)
    passed = sum(1 for _, o, _ in REPORT if o == "ok")
    failed = sum(1 for _, o, _ in REPORT if o == "FAILED")
    skipped = sum(1 for _, o, _ in REPORT if o == "SKIPPED")
    tr.write_line(
        f"conformance: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
    )
