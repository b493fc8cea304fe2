"""Lint and render the bellows Helm chart with Helm's Go SDK (helm-python-sdk).

Run it through scripts/chart.sh, which provides the venv:

    bash scripts/chart.sh lint
    bash scripts/chart.sh render [-f values.yaml]... [--set k=v]... \
        [--kube-version 1.20.2] [--api-versions v1,policy/v1beta1] \
        [--namespace NS] [--name RELEASE] [-o out.yaml]

Exit status: 0 on success, 1 when linting finds a problem or rendering fails
(the reason is printed on stderr), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
from helm_python import _native

#: Lint findings at or above this severity fail (0 unknown, 1 info,
#: 2 warning, 3 error); strict mode already turns warnings into errors.
WARNING = 2

#: Values the schema must reject: an unknown key at the top level and one
#: nested inside a known object.
UNKNOWN_KEYS: list[dict[str, Any]] = [
    {"notAValue": True},
    {"image": {"tagg": "1.0.0"}},
]


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merges `override` into a copy of `base`: maps merge key by key, every
    other value is replaced (Helm's rule for several -f files and --set)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_values(files: list[str], sets: list[str]) -> dict[str, Any]:
    """The user values of `-f` files (in order) and then `--set` expressions."""
    values: dict[str, Any] = {}
    for name in files:
        values = deep_merge(values, helm.values_from_yaml(Path(name).read_text()) or {})
    for expression in sets:
        values = deep_merge(values, helm.parse_set_string(expression))
    return values


def lint_findings(chart: Path, values: dict[str, Any]) -> list[str]:
    """Lint problems (warnings and errors, strict mode) for one set of values."""
    report = helm.lint(str(chart), values, strict=True, quiet=True)
    found = [
        f"{m.get('path', '')}: {m.get('error', '')}"
        for m in report.get("messages") or []
        if m.get("severity", 0) >= WARNING
    ]
    return found + [str(e) for e in report.get("errors") or []]


def lint(chart: Path) -> int:
    """Lints with the default values and each ci/*-values.yaml, then checks
    that the schema rejects unknown keys."""
    cases: list[tuple[str, dict[str, Any]]] = [("default values", {})]
    for path in sorted((chart / "ci").glob("*-values.yaml")):
        cases.append((str(path.relative_to(chart)), load_values([str(path)], [])))
    failed = False
    for label, values in cases:
        problems = lint_findings(chart, values)
        status = "FAIL" if problems else "ok"
        print(f"lint {label}: {status}")
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        failed |= bool(problems)
    for values in UNKNOWN_KEYS:
        rejected = any("additional properties" in p.lower() for p in lint_findings(chart, values))
        status = "ok" if rejected else "FAIL: the schema accepted it"
        print(f"lint rejects unknown key {json.dumps(values)}: {status}")
        failed |= not rejected
    return 1 if failed else 0


def render(
    chart_dir: Path,
    values: dict[str, Any],
    *,
    name: str,
    namespace: str,
    kube_version: str | None,
    api_versions: list[str],
) -> str:
    """Every rendered manifest as one multi-document YAML stream, in template
    order, NOTES.txt and empty templates left out."""
    with helm.Chart.load(str(chart_dir)) as chart:
        chart.validate_schema(chart.merge_values(values))
        # Chart.render does not expose kube_version and api_versions, but the
        # library's render options take them (helm template --kube-version
        # and --api-versions).
        opts: dict[str, Any] = {"name": name, "namespace": namespace, "is_install": True}
        if kube_version:
            opts["kube_version"] = kube_version
        if api_versions:
            opts["api_versions"] = api_versions
        manifests: dict[str, str] = json.loads(
            _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(opts))
        )
    docs = []
    for path in sorted(manifests):
        body = manifests[path].strip()
        if path.endswith("NOTES.txt") or not body:
            continue
        if not body.startswith("---"):
            body = "---\n" + body
        docs.append(f"# Source: {path}\n{body}\n")
    return "".join(docs)


def main(argv: list[str]) -> int:
    """Parses the command line and runs a subcommand."""
    parser = argparse.ArgumentParser(prog="chart.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--chart", type=Path, required=True, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("lint", help="lint (strict) with default and ci/*-values.yaml values")
    r = sub.add_parser("render", help="print every rendered manifest as one YAML stream")
    r.add_argument("-f", "--values", action="append", default=[], help="values file")
    r.add_argument("--set", action="append", default=[], help="k=v (Helm --set syntax)")
    r.add_argument("--kube-version", help="Kubernetes version, e.g. 1.20.2")
    r.add_argument(
        "--api-versions",
        action="append",
        default=[],
        help="comma-separated API versions the cluster serves, e.g. policy/v1beta1",
    )
    r.add_argument("--namespace", default="bellows-system", help="release namespace")
    r.add_argument("--name", default="bellows", help="release name")
    r.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    try:
        if args.command == "lint":
            return lint(args.chart)
        api_versions = [v for arg in args.api_versions for v in arg.split(",") if v]
        out = render(
            args.chart,
            load_values(args.values, args.set),
            name=args.name,
            namespace=args.namespace,
            kube_version=args.kube_version,
            api_versions=api_versions,
        )
    except (helm.HelmError, OSError) as e:
        print(f"chart.sh {args.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.output:
        args.output.write_text(out)
    else:
        sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
