#!/usr/bin/env python3
"""Renders charts/vss-operator with Helm's own engine (helm-python-sdk, the
one .ci/check-chart uses) and writes what a real Prometheus loads:

- OUT/prometheus-rules.yaml: the PrometheusRule's spec, i.e. a Prometheus
  rule file, exactly as the chart renders it for the given values (and
  prometheus-rules.json, the same as JSON);
- OUT/grafana-dashboard.json: the dashboard ConfigMap's JSON.

e2e/tests/prometheus.rs runs it, so promtool and Prometheus check the
chart's output rather than a copy of it. helm-python-sdk cannot set
.Capabilities, so the values must force monitoring.enabled: true.

Usage: render_monitoring.py --chart DIR --values FILE --out DIR
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import helm_python as helm
import yaml


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chart", type=pathlib.Path, required=True)
    ap.add_argument("--values", type=pathlib.Path, required=True)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    args = ap.parse_args()
    values = yaml.safe_load(args.values.read_text()) or {}
    with helm.Chart.load(str(args.chart)) as chart:
        chart.validate_schema(values)
        manifests = chart.render(values, name="vss-operator", namespace="vss-system", is_install=True)
    docs = [d for path, text in manifests.items() if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
    dashboards = [d for d in docs if d.get("kind") == "ConfigMap" and "vss.json" in (d.get("data") or {})]
    if len(rules) != 1 or len(dashboards) != 1:
        print(f"render_monitoring: want one PrometheusRule and one dashboard ConfigMap, got "
              f"{len(rules)} and {len(dashboards)} (are monitoring.enabled and grafana.dashboard.enabled true?)",
              file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prometheus-rules.yaml").write_text(yaml.safe_dump(rules[0]["spec"], sort_keys=False, width=1000))
    # The same rules for readers without a YAML parser (the Rust test).
    (args.out / "prometheus-rules.json").write_text(json.dumps(rules[0]["spec"], indent=2))
    (args.out / "grafana-dashboard.json").write_text(dashboards[0]["data"]["vss.json"])
    kinds = sorted(d["kind"] for d in docs)
    print(f"render_monitoring: {len(docs)} objects ({', '.join(kinds)}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
