#!/usr/bin/env python3
"""Checks charts/vss-operator the way `helm template`, `helm lint` and the API
server would, without a cluster.

- Renders the chart with Helm's own engine (helm-python-sdk binds Helm v4's Go
  SDK) for each values file, after checking the values against
  values.schema.json, and lints it (strict: warnings fail).
- Validates every rendered object, and the CRD, against the Kubernetes
  OpenAPI schemas of one Kubernetes version (kubernetes-validate, strict:
  unknown fields fail, as `kubectl apply` does by default).
- Checks the security promises of the chart on every workload (non-root,
  read-only root filesystem, no privilege escalation, probes, resources).
- Checks the chart's CRD is byte-identical to crds/ and names what the
  operator's contract says.
- Proves the checks can fail: a broken manifest, a broken rendered object,
  a weakened security context, bad values and a drifted CRD must each be
  rejected. If one is accepted, the check itself is broken and CI fails.

Usage: chart_check.py --chart DIR --crd FILE --values NAME=FILE ...
       --kube-version 1.33 --broken FILE --out DIR
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import sys
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate
import yaml

RELEASE = "vss-operator"
NAMESPACE = "vss-system"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}


class Tally:
    """Named checks, printed as they run, counted for the closing line."""

    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, problems: list[str]) -> bool:
        if problems:
            self.failed += 1
            print(f"FAIL {name}")
            for p in problems:
                print(f"     - {p}")
            return False
        self.passed += 1
        print(f"ok   {name}")
        return True

    def expect_rejected(self, name: str, problems: list[str]) -> None:
        """A negative test: `problems` must be non-empty."""
        if problems:
            self.passed += 1
            print(f"ok   {name} (rejected as it should be: {problems[0]})")
        else:
            self.failed += 1
            print(f"FAIL {name}: the check accepted it, so the check itself is broken")


def describe(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    return f"{doc.get('kind', '?')}/{meta.get('name', '?')}"


def documents(manifests: dict[str, str]) -> list[dict[str, Any]]:
    """The objects of a render (NOTES.txt and empty documents left out)."""
    docs = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ValueError(f"{path}: a document is not a mapping")
            docs.append(doc)
    return docs


# The Prometheus Operator's kinds: their CRDs are not in the Kubernetes
# schemas, so monitoring_errors checks them instead.
MONITORING_API = "monitoring.coreos.com/v1"
MONITORING_KINDS = {"PodMonitor", "ServiceMonitor", "PrometheusRule"}


def schema_errors(docs: list[dict[str, Any]], kube_version: str) -> list[str]:
    """Every object against the Kubernetes schema; unknown kinds are errors,
    since this chart must only contain built-in kinds (and the Prometheus
    Operator's, checked by monitoring_errors)."""
    errors = []
    for doc in docs:
        if doc.get("apiVersion") == MONITORING_API and doc.get("kind") in MONITORING_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            errors.append(f"{describe(doc)}: {e.message} at {where}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{describe(doc)}: {e.message}")
    return errors


def monitoring_errors(docs: list[dict[str, Any]]) -> list[str]:
    """The fields the Prometheus Operator needs of the monitoring objects,
    and that each alert has an expression, a `for` and a severity (promtool
    checks the PromQL itself, in e2e/tests/prometheus.rs)."""
    errors = []
    for doc in docs:
        if doc.get("apiVersion") != MONITORING_API:
            continue
        spec = doc.get("spec") or {}
        who = describe(doc)
        if doc.get("kind") == "PodMonitor":
            eps = spec.get("podMetricsEndpoints") or []
            if not spec.get("selector", {}).get("matchLabels"):
                errors.append(f"{who}: no selector.matchLabels")
            if [e.get("port") for e in eps] != ["http"]:
                errors.append(f"{who}: endpoints {eps!r} are not the runtime's port http")
        elif doc.get("kind") == "ServiceMonitor":
            if not spec.get("selector", {}).get("matchLabels") or not spec.get("endpoints"):
                errors.append(f"{who}: no selector or endpoints")
        elif doc.get("kind") == "PrometheusRule":
            rules = [r for g in spec.get("groups") or [] for r in g.get("rules") or []]
            if not rules:
                errors.append(f"{who}: no rules")
            for r in rules:
                if not (r.get("alert") and r.get("expr") and r.get("for") and (r.get("labels") or {}).get("severity")):
                    errors.append(f"{who}: rule {r.get('alert')!r} lacks alert, expr, for or a severity")
        else:
            errors.append(f"{who}: unexpected kind")
    return errors


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    kind = doc.get("kind")
    if kind == "Pod":
        return doc.get("spec") or {}
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind in WORKLOAD_KINDS:
        return doc["spec"]["template"]["spec"]
    return None


def policy_errors(docs: list[dict[str, Any]]) -> list[str]:
    """What the chart promises about every container it runs."""
    errors = []
    for doc in docs:
        spec = pod_spec(doc)
        if spec is None:
            continue
        pod_sc = spec.get("securityContext") or {}
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            who = f"{describe(doc)} container {c.get('name')}"
            sc = c.get("securityContext") or {}
            if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
                errors.append(f"{who}: runAsNonRoot is not true")
            if (sc.get("runAsUser", pod_sc.get("runAsUser")) or 0) == 0:
                errors.append(f"{who}: runAsUser is unset or 0 (root)")
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{who}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{who}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                errors.append(f"{who}: privileged")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                errors.append(f"{who}: capabilities do not drop ALL")
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    errors.append(f"{who}: no {probe}")
            res = c.get("resources") or {}
            if "memory" not in (res.get("limits") or {}) or not res.get("requests"):
                errors.append(f"{who}: needs resource requests and a memory limit")
            image = str(c.get("image", ""))
            if image.endswith(":latest") or ("@" not in image and ":" not in image.rsplit("/", 1)[-1]):
                errors.append(f"{who}: image {image!r} has no fixed tag or digest")
    return errors


def kinds(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def expect_default(docs: list[dict[str, Any]]) -> list[str]:
    """Default values: cluster-wide RBAC, HA with a PDB, own ServiceAccount."""
    k = kinds(docs)
    problems = [f"no {kind}" for kind in
                ("ClusterRole", "ClusterRoleBinding", "ServiceAccount", "PodDisruptionBudget", "Service")
                if kind not in k]
    deploy = k.get("Deployment", [{}])[0]
    if deploy.get("spec", {}).get("replicas") != 2:
        problems.append("Deployment replicas is not 2")
    # No cluster reports the Prometheus Operator's API, so "auto" leaves
    # the monitoring objects out; the dashboard is a plain ConfigMap.
    problems += [f"unexpected {kind} (monitoring.enabled is auto)" for kind in MONITORING_KINDS if kind in k]
    dashboards = [c for c in k.get("ConfigMap", []) if (c["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"]
    if len(dashboards) != 1:
        problems.append("no ConfigMap labelled grafana_dashboard: \"1\"")
    env = {e["name"]: e for e in pod_spec(deploy)["containers"][0]["env"]} if deploy else {}
    for name in ("WATCH_NAMESPACE", "VSS_RUNTIME_IMAGE", "RUST_LOG", "VSS_LOG_FORMAT", "POD_NAME", "POD_NAMESPACE"):
        if name not in env:
            problems.append(f"operator env has no {name}")
    return problems


def expect_custom(docs: list[dict[str, Any]]) -> list[str]:
    """ci/custom-values.yaml: one watched namespace, one replica, an existing
    ServiceAccount, a digest-pinned image."""
    k = kinds(docs)
    problems = [f"unexpected {kind}" for kind in
                ("ClusterRole", "ClusterRoleBinding", "ServiceAccount", "PodDisruptionBudget") if kind in k]
    if not any(r["metadata"].get("namespace") == "team-a" for r in k.get("Role", [])):
        problems.append("no Role in the watched namespace team-a")
    deploy = k.get("Deployment", [{}])[0]
    container = pod_spec(deploy)["containers"][0]
    if "@sha256:" not in container["image"]:
        problems.append("image is not pinned by digest")
    problems += [f"no {kind} (monitoring.enabled is true)" for kind in sorted(MONITORING_KINDS) if kind not in k]
    for pm in k.get("PodMonitor", []):
        if pm["spec"].get("namespaceSelector") != {"matchNames": ["team-a"]}:
            problems.append(f"PodMonitor namespaceSelector is {pm['spec'].get('namespaceSelector')!r}")
    if not any((c["metadata"].get("labels") or {}).get("example.com/dashboards") == "vss"
               for c in k.get("ConfigMap", [])):
        problems.append("no dashboard ConfigMap with the custom label example.com/dashboards: vss")
    env = {e["name"]: e.get("value") for e in container["env"]}
    if env.get("WATCH_NAMESPACE") != "team-a":
        problems.append(f"WATCH_NAMESPACE is {env.get('WATCH_NAMESPACE')!r}")
    return problems


EXPECTATIONS: dict[str, Callable[[list[dict[str, Any]]], list[str]]] = {
    "default": expect_default,
    "custom": expect_custom,
}


def lint_problems(chart_dir: pathlib.Path, values: dict[str, Any], kube_version: str) -> list[str]:
    report = helm.lint(str(chart_dir), values, strict=True, kube_version=f"v{kube_version}.0")
    problems = [f"{m['path']}: {m['error'].strip()}" for m in report["messages"] if m["severity"] >= 2]
    if not problems:
        problems = [e.strip() for e in report.get("errors", []) if e.strip()]
    for m in report["messages"]:
        if m["severity"] < 2:
            print(f"     lint info: {m['path']}: {m['error'].strip()}")
    return problems


def crd_problems(crd_path: pathlib.Path, chart_crd: pathlib.Path, kube_version: str) -> tuple[list[str], list[str], list[str]]:
    """(byte identity, schema validation, contract) problems of the CRD."""
    if not crd_path.is_file() or crd_path.stat().st_size == 0:
        missing = [f"{crd_path} is missing or empty (generate it with `vss-operator crd`)"]
        return missing, missing, missing
    identity = []
    if not chart_crd.is_file() or chart_crd.read_bytes() != crd_path.read_bytes():
        identity.append(f"{chart_crd} differs from {crd_path}: cp {crd_path} {chart_crd}")
    docs = [d for d in yaml.safe_load_all(crd_path.read_text()) if d is not None]
    schema = schema_errors(docs, kube_version)
    contract = []
    if len(docs) != 1 or docs[0].get("kind") != "CustomResourceDefinition":
        contract.append(f"{crd_path} must hold exactly one CustomResourceDefinition")
    else:
        spec = docs[0].get("spec", {})
        names = spec.get("names", {})
        want = {"group": "vss.dev", "kind": "VssCluster", "plural": "vssclusters", "scope": "Namespaced"}
        got = {"group": spec.get("group"), "kind": names.get("kind"), "plural": names.get("plural"),
               "scope": spec.get("scope")}
        if got != want:
            contract.append(f"CRD names {got}, want {want}")
        versions = {v.get("name"): v for v in spec.get("versions", [])}
        v1 = versions.get("v1alpha1", {})
        if not (v1.get("served") and v1.get("storage")):
            contract.append("version v1alpha1 is not served and stored")
        if "status" not in (v1.get("subresources") or {}):
            contract.append("v1alpha1 has no status subresource (the operator writes /status)")
    return identity, schema, contract


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chart", type=pathlib.Path, required=True)
    ap.add_argument("--crd", type=pathlib.Path, required=True)
    ap.add_argument("--values", action="append", default=[], metavar="NAME=FILE",
                    help="a values case; NAME=- for the chart's defaults")
    ap.add_argument("--kube-version", required=True, help="e.g. 1.33")
    ap.add_argument("--broken", type=pathlib.Path, required=True, help="a manifest that must be rejected")
    ap.add_argument("--out", type=pathlib.Path, required=True, help="where rendered manifests are written")
    args = ap.parse_args()

    print(f"helm SDK {helm.helm_sdk_version()} (libhelm_c {helm.helm_c_version()}), "
          f"kubernetes-validate {kubernetes_validate.__version__}, Kubernetes {args.kube_version}")
    tally = Tally()
    rendered: dict[str, list[dict[str, Any]]] = {}

    with helm.Chart.load(str(args.chart)) as chart:
        print(f"chart {chart.name} {chart.version} (appVersion {chart.metadata.get('appVersion')})")
        for case in args.values:
            name, _, path = case.partition("=")
            values = {} if path in ("", "-") else (yaml.safe_load(pathlib.Path(path).read_text()) or {})
            label = f"[{name}{'' if path in ('', '-') else ' ' + path}]"
            try:
                chart.validate_schema(values)
                tally.check(f"{label} values match values.schema.json", [])
            except helm.HelmValuesError as e:
                tally.check(f"{label} values match values.schema.json", [str(e)])
            tally.check(f"{label} helm lint --strict --kube-version {args.kube_version}",
                        lint_problems(args.chart, values, args.kube_version))
            try:
                manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            except helm.HelmError as e:
                tally.check(f"{label} helm template", [str(e)])
                continue
            out = args.out / name
            for path_in_chart, text in manifests.items():
                target = out / path_in_chart
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            docs = documents(manifests)
            rendered[name] = docs
            tally.check(f"{label} helm template: {len(docs)} objects ({', '.join(describe(d) for d in docs)})",
                        [] if docs else ["rendered nothing"])
            tally.check(f"{label} every object valid for Kubernetes {args.kube_version} (strict)",
                        schema_errors(docs, args.kube_version))
            tally.check(f"{label} non-root, read-only root fs, no privilege escalation, probes, resources",
                        policy_errors(docs))
            tally.check(f"{label} PodMonitor, ServiceMonitor and PrometheusRule have what the Prometheus Operator needs",
                        monitoring_errors(docs))
            if name in EXPECTATIONS:
                tally.check(f"{label} renders what these values ask for", EXPECTATIONS[name](docs))

        # What `helm install` would create: exactly the CRD of crds/.
        helm_crds = chart.crds
        problems = []
        if [c["filename"] for c in helm_crds] != [f"{chart.name}/crds/vsscluster.yaml"]:
            problems.append(f"chart CRDs: {[c['filename'] for c in helm_crds]}")
        elif args.crd.is_file() and helm_crds[0]["data"] != args.crd.read_text():
            problems.append(f"the CRD Helm loads differs from {args.crd}")
        tally.check("helm installs exactly crds/vsscluster.yaml", problems)

    chart_crd = args.chart / "crds" / "vsscluster.yaml"
    identity, crd_schema, contract = crd_problems(args.crd, chart_crd, args.kube_version)
    tally.check(f"{chart_crd} is byte-identical to {args.crd}", identity)
    tally.check(f"CRD valid as a CustomResourceDefinition for Kubernetes {args.kube_version} (strict)", crd_schema)
    tally.check("CRD is vssclusters.vss.dev v1alpha1 VssCluster, namespaced, with /status", contract)

    # The checks must be able to fail.
    broken = [d for d in yaml.safe_load_all(args.broken.read_text()) if d is not None]
    tally.expect_rejected(f"negative: {args.broken} is rejected by the schema check",
                          schema_errors(broken, args.kube_version))
    if "default" in rendered:
        docs = copy.deepcopy(rendered["default"])
        deploy = next(d for d in docs if d["kind"] == "Deployment")
        pod_spec(deploy)["containers"][0]["ports"][0]["containerPort"] = "http"
        tally.expect_rejected("negative: a rendered Deployment with containerPort \"http\" is rejected",
                              schema_errors(docs, args.kube_version))
        docs = copy.deepcopy(rendered["default"])
        deploy = next(d for d in docs if d["kind"] == "Deployment")
        pod_spec(deploy)["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
        tally.expect_rejected("negative: a writable root filesystem is rejected by the policy check",
                              policy_errors(docs))
        docs = copy.deepcopy(rendered["default"])
        deploy = next(d for d in docs if d["kind"] == "Deployment")
        deploy["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
        tally.expect_rejected("negative: an unknown field (a typo) is rejected",
                              schema_errors(docs, args.kube_version))
    bad_values = {"replicaCount": 0, "imagee": {"repository": "x"}}
    with helm.Chart.load(str(args.chart)) as chart:
        try:
            chart.validate_schema(bad_values)
            schema_rejects: list[str] = []
        except helm.HelmValuesError as e:
            schema_rejects = [" ".join(str(e).split())]
    tally.expect_rejected("negative: values with replicaCount 0 and a typo are rejected by the schema",
                          schema_rejects)
    tally.expect_rejected("negative: helm lint fails on those values",
                          lint_problems(args.chart, bad_values, args.kube_version))
    if args.crd.is_file() and args.crd.stat().st_size > 0:
        drifted = args.out / "drifted-crd" / "vsscluster.yaml"
        drifted.parent.mkdir(parents=True, exist_ok=True)
        drifted.write_bytes(args.crd.read_bytes() + b"\n")
        identity, _, _ = crd_problems(args.crd, drifted, args.kube_version)
        tally.expect_rejected("negative: a CRD copy differing by one byte is caught", identity)
        crd_docs = [d for d in yaml.safe_load_all(args.crd.read_text()) if d is not None]
        for version in crd_docs[0].get("spec", {}).get("versions", [])[:1]:
            version["served"] = "yes"
        tally.expect_rejected("negative: a CRD with served: \"yes\" is rejected by the schema check",
                              schema_errors(crd_docs, args.kube_version))

    print(f"chart-check: {tally.passed} passed, {tally.failed} failed")
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
