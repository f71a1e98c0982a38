"""Tests of the client against real `vss-runtime` processes beyond the
conformance scenarios: tokens, TLS with client certificates, streams
reopened after a restart. They share the conformance harness and its
rules: `$VSS_RUNTIME_BIN` or a failure naming it; `VSS_CONFORMANCE_SKIP=1`
skips them, loudly."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "conformance"))
