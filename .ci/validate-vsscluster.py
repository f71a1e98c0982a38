#!/usr/bin/env python3
"""Validates VssCluster manifests against the openAPIV3Schema of the CRD.

Usage: validate-vsscluster.py CRD.yaml FILE...            (all must pass)
       validate-vsscluster.py --expect-invalid CRD.yaml FILE...

With --expect-invalid every FILE that has a line `# expect: TEXT` must be
rejected with a message containing TEXT, so a file rejected for another
reason than the one it was written to show does not count. Files without
it break a CEL rule, which this script cannot evaluate; they are skipped.

Unknown fields are refused like `kubectl apply` (strict field validation)
does: objects with declared properties and no additionalProperties get
additionalProperties: false. CEL rules (x-kubernetes-validations) are not
evaluated here; the operator's tests and `vss-operator validate` do that.
"""
import re
import sys

import jsonschema
import yaml


def strict(schema):
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            strict(value)
    elif isinstance(schema, list):
        for value in schema:
            strict(value)
    return schema


def load_schema(crd_path):
    with open(crd_path) as f:
        crd = yaml.safe_load(f)
    group = crd["spec"]["group"]
    kind = crd["spec"]["names"]["kind"]
    versions = {
        f"{group}/{v['name']}": strict(v["schema"]["openAPIV3Schema"])
        for v in crd["spec"]["versions"]
    }
    return kind, versions


def drop_nulls(value):
    """The API server drops `null` map values of fields that are not
    nullable (the CRD has none) before validating: `image: null` is unset."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def errors_of(doc, kind, versions):
    if doc.get("kind") != kind:
        return [f"kind: expected {kind}, got {doc.get('kind')!r}"]
    schema = versions.get(doc.get("apiVersion"))
    if schema is None:
        return [f"apiVersion: {doc.get('apiVersion')!r} is not one of {sorted(versions)}"]
    # apiVersion, kind and metadata are checked by the API server itself,
    # not by the CRD's schema (which does not declare them).
    body = drop_nulls({k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")})
    validator = jsonschema.Draft7Validator(schema)
    out = []
    for e in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in e.absolute_path)
        path = path.replace(".[", "[") or "<root>"
        message = e.message
        if e.validator in ("maxItems", "minItems"):
            # jsonschema would print the whole list.
            bound = "at most" if e.validator == "maxItems" else "at least"
            message = f"{len(e.instance)} items, {bound} {e.validator_value} allowed"
        elif e.validator == "maxLength":
            # Nor the whole string, up to 256 characters.
            message = f"{len(e.instance)} characters, at most {e.validator_value} allowed"
        out.append(f"{path}: {message}")
    return out


def main(argv):
    expect_invalid = "--expect-invalid" in argv
    args = [a for a in argv if a != "--expect-invalid"]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    kind, versions = load_schema(args[0])
    failed = False
    for path in args[1:]:
        with open(path) as f:
            text = f.read()
        docs = [d for d in yaml.safe_load_all(text) if d]
        problems = [p for d in docs for p in errors_of(d, kind, versions)]
        if not expect_invalid:
            if problems:
                failed = True
                print(f"FAIL {path}")
                for p in problems:
                    print(f"  - {p}")
            else:
                print(f"ok   {path}")
            continue
        expected = re.findall(r"^# expect: (.+)$", text, re.M)
        if not expected:
            print(f"skip {path}: no `# expect:` line (a CEL rule, checked by vss-operator validate)")
            continue
        if not problems:
            failed = True
            print(f"FAIL {path}: accepted, but it is invalid")
        elif expected and not any(e in p for e in expected for p in problems):
            failed = True
            print(f"FAIL {path}: rejected, but not for {expected}: {problems}")
        else:
            print(f"ok   {path} rejected: {problems[0]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
