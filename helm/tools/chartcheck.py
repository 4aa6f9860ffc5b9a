#!/usr/bin/env python3
"""Checks for the weft Helm chart, run by helm/check.sh inside its tool venv.

Uses real tools, not re-implementations:
  * Helm itself (v4 Go SDK via helm-python-sdk's libhelm_c) to lint and to render, with
    values.schema.json enforced exactly as `helm install` / `helm template` do;
  * kubernetes-validate's bundled OpenAPI schemas (strict: unknown fields are errors) for
    every built-in kind, at the oldest Kubernetes the chart supports and the newest bundled;
  * cloudcoil's prometheus-operator models (generated from the CRDs) for ServiceMonitor and
    PrometheusRule;
  * yamllint on the rendered manifests;
  * promql-parser (a PromQL parser) to read every dashboard query and alert expression and
    compare the metrics and labels they use with helm/metric-names.txt.

Prints one line per check and ends with "N passed, M failed"; exits non-zero on failure.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import tomllib
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable

import helm_python as helm
import kubernetes_validate
import promql_parser
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

HELM_DIR = Path(__file__).resolve().parents[1]
CHART = HELM_DIR / "weft"
OUT_DIR = HELM_DIR / ".out"
RELEASE = "weft"
NAMESPACE = "weft"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema
# kubernetes-validate ships.
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_dashboard  # noqa: E402
import build_schema  # noqa: E402

# ------------------------------------------------------------------------------ harness

RESULTS: list[tuple[str, bool, str]] = []


def check(name: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    """Run the decorated function now as one named check; AssertionError fails it."""

    def run(fn: Callable[[], Any]) -> Callable[[], Any]:
        try:
            detail = fn()
            RESULTS.append((name, True, detail or ""))
            print(f"ok   {name}" + (f"  ({detail})" if detail else ""), flush=True)
        except AssertionError as e:
            RESULTS.append((name, False, str(e)))
            print(f"FAIL {name}\n     {str(e).replace(chr(10), chr(10) + '     ')}", flush=True)
        except Exception as e:  # a crash in a check is a failure too, with its trace
            RESULTS.append((name, False, repr(e)))
            print(f"FAIL {name} (error)\n{traceback.format_exc()}", flush=True)
        return fn

    return run


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


# ------------------------------------------------------------------------------ helpers


def load_values(path: Path) -> dict:
    # Helm's own YAML reader, so values mean exactly what `helm -f` makes of them.
    return helm.values_from_yaml(path.read_text(encoding="utf-8"))


def render(values: dict | None) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def manifests_text(rendered: dict[str, str]) -> str:
    parts = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt") or not rendered[path].strip():
            continue
        parts.append(f"---\n# Source: {path}\n{rendered[path].strip()}\n")
    return "".join(parts)


def objects(rendered: dict[str, str]) -> list[dict]:
    objs = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(rendered[path]):
            if doc:
                expect(isinstance(doc, dict), f"{path}: a document is not a mapping")
                objs.append(doc)
    return objs


def one(objs: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [
        o for o in objs if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)
    ]
    expect(len(found) == 1, f"expected exactly one {kind}*{name_suffix}, found {len(found)}")
    return found[0]


def kinds(objs: list[dict]) -> list[str]:
    return sorted(o["kind"] for o in objs)


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def missing_keys(given: Any, kept: Any, path: str = "") -> list[str]:
    """Paths present in `given` but dropped from `kept`: fields the model does not know."""
    out: list[str] = []
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return [path or "."]
        for k, v in given.items():
            if k not in kept:
                out.append(f"{path}.{k}")
            else:
                out.extend(missing_keys(v, kept[k], f"{path}.{k}"))
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (g, k) in enumerate(zip(given, kept)):
            out.extend(missing_keys(g, k, f"{path}[{i}]"))
    return out


# ---------------------------------------------------------------- schema validation


def validate_object(obj: dict) -> list[str]:
    """Errors for one rendered object: Kubernetes schema, or the operator CRD models."""
    errors = []
    kind, api = obj.get("kind"), obj.get("apiVersion", "")
    where = f"{kind}/{obj.get('metadata', {}).get('name')}"
    if api.startswith("monitoring.coreos.com/"):
        from cloudcoil.models.prometheus_operator import v1 as pov1  # slow import: lazily

        model = {"ServiceMonitor": pov1.ServiceMonitor, "PrometheusRule": pov1.PrometheusRule}
        expect(kind in model, f"{where}: no schema known for {api} {kind}")
        try:
            parsed = model[kind].model_validate(obj)
        except Exception as e:  # pydantic.ValidationError
            return [f"{where} ({api}): {e}"]
        kept = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
        for p in missing_keys(obj, kept):
            errors.append(f"{where} ({api}): unknown field {p}")
        return errors
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.utils.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{where} (k8s {version}): {path}: {e.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as e:
            errors.append(f"{where}: {e.message}")
    return errors


YAMLLINT_RENDERED = YamlLintConfig(
    """
extends: default
rules:
  document-start: disable
  line-length: disable
  indentation: {spaces: consistent, indent-sequences: whatever}
  comments: {min-spaces-from-content: 1}
  truthy: {check-keys: false}
"""
)


# ---------------------------------------------------------------- metrics contract


def load_contract() -> dict[str, tuple[str, set[str]]]:
    contract: dict[str, tuple[str, set[str]]] = {}
    for line in (HELM_DIR / "metric-names.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        expect(len(fields) == 3, f"metric-names.txt: bad line {line!r}")
        name, mtype, labels = fields
        expect(mtype in {"counter", "gauge", "histogram"}, f"metric-names.txt: bad type {mtype}")
        expect(name.startswith("weft_"), f"metric-names.txt: {name} lacks the weft_ prefix")
        contract[name] = (mtype, set() if labels == "-" else set(labels.split(",")))
    return contract


# Labels Prometheus attaches when scraping (target labels), usable on any metric.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
# Closed label value sets from DESIGN.md (§2 statuses, §3 channels/providers, §5 rules,
# the dispatch outcomes of the metrics contract). A typo in a query is caught here.
LABEL_VALUES = {
    "outcome@weft_dispatch_attempts_total": {"ok", "retryable", "permanent", "throttled", "timeout"},
    "status@weft_message_status_total": {
        "accepted", "queued", "sending", "sent", "delivered", "read",
        "rejected", "failed", "undeliverable", "expired",
    },
    "channel": {"sms", "voice", "whatsapp", "telegram", "email"},
    "rule": {"explicit", "reply_ref", "lease", "contact", "new"},
    "provider": {
        "twilio", "vonage", "sendgrid", "mailgun", "whatsapp_cloud", "telegram", "smtp", "sandbox",
    },
}
GRAFANA_VARS = re.compile(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}")


def literal_alternatives(regex: str) -> list[str] | None:
    """'a|b|c' -> [a, b, c] when the regex is a plain alternation of literals."""
    if re.fullmatch(r"[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*", regex):
        return regex.split("|")
    return None


def metric_problems(expr: str, contract: dict, where: str) -> tuple[list[str], set[str]]:
    """Parse one PromQL expression; report unknown metrics, labels and label values."""
    problems: list[str] = []
    used: set[str] = set()
    try:
        ast = promql_parser.parse(GRAFANA_VARS.sub("5m", expr))
    except Exception as e:
        return [f"{where}: PromQL does not parse: {e}\n  {expr}"], used

    selectors: list[Any] = []
    groupings: list[list[str]] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            selectors.append(node)
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            groupings.append(list(node.modifier.labels))
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            matching = getattr(node.modifier, "matching", None)
            if matching is not None:
                groupings.append(list(matching.labels))
        return True

    promql_parser.walk(ast, visit)
    expect(selectors or "vector(" in expr, f"{where}: no metric selector found in {expr}")

    all_labels = set(TARGET_LABELS)
    for vs in selectors:
        name = vs.name
        if not name:
            problems.append(f"{where}: a selector without a literal metric name: {vs}")
            continue
        base, suffix = name, ""
        for s in ("_bucket", "_sum", "_count"):
            if name.endswith(s) and name[: -len(s)] in contract:
                base, suffix = name[: -len(s)], s
        if base not in contract:
            problems.append(f"{where}: metric {name} is not in helm/metric-names.txt")
            continue
        mtype, labels = contract[base]
        if mtype == "histogram" and not suffix:
            problems.append(f"{where}: {name} is a histogram: use {name}_bucket/_sum/_count")
        if suffix and mtype != "histogram":
            problems.append(f"{where}: {name}: {base} is a {mtype}, not a histogram")
        used.add(base)
        allowed = labels | TARGET_LABELS | ({"le"} if suffix == "_bucket" else set())
        all_labels |= allowed
        for m in vs.matchers.matchers:
            if m.name == "__name__":
                problems.append(f"{where}: {name}: __name__ matchers are not allowed")
                continue
            if m.name not in allowed:
                problems.append(f"{where}: {name} has no label {m.name!r} (has {sorted(labels)})")
                continue
            enum = LABEL_VALUES.get(f"{m.name}@{base}", LABEL_VALUES.get(m.name))
            if enum is None or "$" in m.value:
                continue
            op = str(m.op)
            values = [m.value] if op.endswith(("Equal", "NotEqual")) else literal_alternatives(m.value)
            for v in values or []:
                if v and v not in enum:
                    problems.append(f"{where}: {name}{{{m.name}}}: unknown value {v!r}")
    for group in groupings:
        for label in group:
            if label not in all_labels:
                problems.append(f"{where}: groups by {label!r}, which no metric in it has")
    return problems, used


def dashboard_queries(dash: dict) -> Iterable[tuple[str, str]]:
    def panels(ps: list[dict]) -> Iterable[dict]:
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            yield f"panel {p.get('title')!r} {t.get('refId')}", t["expr"]
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_]+)\)", q)
            expect(m is not None, f"variable {v['name']}: unsupported query {q}")
            # label_values(selector, label) == the label of that selector's series.
            yield f"variable {v['name']}", f"count by ({m.group(2)}) ({m.group(1)})"


def rule_file_alerts(doc: dict) -> list[dict]:
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


# ---------------------------------------------------------------------------- checks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args()
    OUT_DIR.mkdir(exist_ok=True)
    print(
        f"helm SDK {helm.helm_sdk_version()} (helm-python-sdk {helm.__version__}); "
        f"Kubernetes schemas {', '.join(KUBE_VERSIONS)}",
        flush=True,
    )
    chart_meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    prod_values = load_values(HELM_DIR / "ci" / "production-values.yaml")
    rules_doc = yaml.safe_load((CHART / "rules" / "weft-alerts.yaml").read_text())
    dash_text = (CHART / "dashboards" / "weft.json").read_text()
    rendered: dict[str, dict[str, str]] = {}
    objs: dict[str, list[dict]] = {}

    @check("values.schema.json is up to date with helm/tools/build_schema.py")
    def _():
        expect(build_schema.OUT.read_text() == build_schema.render(), "run python3 helm/tools/build_schema.py")

    @check("dashboards/weft.json is up to date with helm/tools/build_dashboard.py")
    def _():
        expect(dash_text == build_dashboard.render(), "run python3 helm/tools/build_dashboard.py")

    for case, values in (("default", None), ("production", prod_values)):

        @check(f"helm lint --strict ({case} values)")
        def _():
            report = helm.lint(CHART, values, strict=True, kube_version="v" + KUBE_VERSIONS[0])
            bad = [m for m in report["messages"] if m["severity"] >= 2] + [
                {"path": "", "error": e} for e in report["errors"]
            ]
            expect(not bad, "\n".join(f"{m['path']}: {m['error']}" for m in bad))
            infos = [m["error"] for m in report["messages"] if m["severity"] < 2]
            return "; ".join(infos)

        @check(f"helm template ({case} values)")
        def _():
            rendered[case] = render(values)
            objs[case] = objects(rendered[case])
            (OUT_DIR / f"{case}.yaml").write_text(manifests_text(rendered[case]))
            return f"{len(objs[case])} objects -> helm/.out/{case}.yaml"

        if case not in objs:
            continue

        @check(f"yamllint rendered manifests ({case} values)")
        def _():
            text = manifests_text(rendered[case])
            problems = [p for p in linter.run(text, YAMLLINT_RENDERED) if p.level == "error"]
            expect(not problems, "\n".join(f"line {p.line}: {p.desc} ({p.rule})" for p in problems))

        @check(f"every object validates against its schema ({case} values)")
        def _():
            errors = [e for o in objs[case] for e in validate_object(o)]
            expect(not errors, "\n".join(errors))
            return ", ".join(kinds(objs[case]))

        @check(f"config renders as valid TOML ({case} values)")
        def _():
            cm = one(objs[case], "ConfigMap", RELEASE)
            tomllib.loads(cm["data"]["weft.toml"])

    @check("helm package: the packaged chart renders the same (nothing needed is .helmignore'd)")
    def _():
        archive = helm.package(CHART, destination=OUT_DIR)
        with helm.Chart.load(archive) as packaged:
            again = packaged.render(prod_values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        expect(again == rendered.get("production"), "packaged chart renders differently")
        return Path(archive).name

    # ---------------------------------------------------------------- negative renders
    cases = yaml.safe_load((HELM_DIR / "ci" / "must-fail.yaml").read_text())["cases"]
    for c in cases:

        @check(f"refuses to render: {c['name']}")
        def _():
            try:
                render(helm.values_from_yaml(yaml.safe_dump(c["values"])))
            except helm.HelmError as e:
                msg = str(e)
                expect(c["expect"].lower() in msg.lower(), f"failed, but without {c['expect']!r}: {msg}")
                # The refusal must not itself leak the secret into CI logs.
                if c.get("secret"):
                    expect(c["secret"] not in msg, f"the error message repeats the secret: {msg}")
                return msg.splitlines()[0][:110] + "…"
            raise AssertionError("rendered successfully; it must fail")

    # ---------------------------------------------------------------- default install
    d = objs.get("default", [])

    @check("default: ConfigMap, dashboard, Deployment, Service, PDB, migration Job; nothing optional")
    def _():
        expect(
            kinds(d) == ["ConfigMap", "ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service"],
            f"got {kinds(d)}",
        )
        expect(not [o for o in d if o["kind"] == "Secret"], "the chart must never create a Secret")

    @check("default: 3 replicas of the appVersion image, serve, listening on 0.0.0.0:8080")
    def _():
        dep = one(d, "Deployment")
        expect(dep["spec"]["replicas"] == 3, f"replicas {dep['spec'].get('replicas')}")
        c = dep["spec"]["template"]["spec"]["containers"][0]
        expect(c["image"] == f"weft:{chart_meta['appVersion']}", c["image"])
        expect(chart_meta["appVersion"] == "0.1.0", "appVersion")
        expect(c["args"] == ["serve"], f"args {c['args']}")
        env = env_of(c)
        expect(env["WEFT_LISTEN"]["value"] == "0.0.0.0:8080", "WEFT_LISTEN")
        expect(env["WEFT_PUBLIC_URL"]["value"].startswith("http"), "WEFT_PUBLIC_URL")
        expect({p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080}, "ports")

    @check("default: WEFT_DATABASE_URL only from existingSecret; no literal secrets in env")
    def _():
        for o in d:
            if o["kind"] not in ("Deployment", "Job"):
                continue
            for c in o["spec"]["template"]["spec"]["containers"]:
                env = env_of(c)
                db = env.get("WEFT_DATABASE_URL")
                expect(db is not None, f"{o['kind']}: no WEFT_DATABASE_URL")
                expect("value" not in db, f"{o['kind']}: WEFT_DATABASE_URL has a literal value")
                ref = db["valueFrom"]["secretKeyRef"]
                expect(ref == {"name": RELEASE, "key": "database-url"}, f"secretKeyRef {ref}")
                for e in c.get("env", []):
                    expect("://" not in str(e.get("value", "")) or "@" not in str(e.get("value", "")),
                           f"{e['name']} carries a URL with user info")

    @check("default: weft.toml from the ConfigMap at /etc/weft/weft.toml, WEFT_CONFIG points at it")
    def _():
        dep = one(d, "Deployment")
        spec = dep["spec"]["template"]["spec"]
        c = spec["containers"][0]
        expect(env_of(c)["WEFT_CONFIG"]["value"] == "/etc/weft/weft.toml", "WEFT_CONFIG")
        mount = [m for m in c["volumeMounts"] if m["mountPath"] == "/etc/weft/weft.toml"]
        expect(len(mount) == 1 and mount[0].get("readOnly"), "mount of /etc/weft/weft.toml")
        vol = [v for v in spec["volumes"] if v["name"] == mount[0]["name"]][0]
        cm = one(d, "ConfigMap", RELEASE)
        expect(vol["configMap"]["name"] == cm["metadata"]["name"], "volume is not the ConfigMap")
        expect(mount[0]["subPath"] in cm["data"], "subPath not a ConfigMap key")
        ann = dep["spec"]["template"]["metadata"]["annotations"]
        expect("checksum/config" in ann, "no checksum/config annotation: pods would not roll on config change")

    @check("default: probes /healthz (liveness, startup) and /readyz (readiness) on the http port")
    def _():
        c = one(d, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        expect(c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, "liveness")
        expect(c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, "startup")
        expect(c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, "readiness")

    @check("default: terminationGracePeriodSeconds outlasts preStop sleep + drain (20 s)")
    def _():
        spec = one(d, "Deployment")["spec"]["template"]["spec"]
        c = spec["containers"][0]
        drain = int(env_of(c)["WEFT_SHUTDOWN__DRAIN_SECONDS"]["value"])
        sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        expect(drain == 20, f"drain {drain}")
        grace = spec["terminationGracePeriodSeconds"]
        expect(grace > drain + sleep, f"grace {grace} <= {sleep} + {drain}")
        return f"grace {grace} s = preStop {sleep} + drain {drain} + 10"

    @check("default: non-root, read-only root filesystem, no privilege escalation, no capabilities")
    def _():
        for o in d:
            if o["kind"] not in ("Deployment", "Job"):
                continue
            spec = o["spec"]["template"]["spec"]
            expect(spec["securityContext"]["runAsNonRoot"] is True, f"{o['kind']} runAsNonRoot")
            expect(spec["securityContext"]["runAsUser"] != 0, f"{o['kind']} runAsUser 0")
            expect(spec["automountServiceAccountToken"] is False, f"{o['kind']} SA token mounted")
            for c in spec["containers"]:
                sc = c["securityContext"]
                expect(sc["readOnlyRootFilesystem"] is True, f"{o['kind']} readOnlyRootFilesystem")
                expect(sc["allowPrivilegeEscalation"] is False, f"{o['kind']} privilege escalation")
                expect(sc["capabilities"]["drop"] == ["ALL"], f"{o['kind']} capabilities")
                expect(c["resources"]["requests"] and c["resources"]["limits"]["memory"], f"{o['kind']} resources")

    @check("default: Service and PDB select the server pods only, not the migration Job")
    def _():
        dep = one(d, "Deployment")
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        job_labels = one(d, "Job")["spec"]["template"]["metadata"]["labels"]
        svc = one(d, "Service")
        pdb = one(d, "PodDisruptionBudget")
        for what, sel in (("Service", svc["spec"]["selector"]),
                          ("PDB", pdb["spec"]["selector"]["matchLabels"]),
                          ("Deployment", dep["spec"]["selector"]["matchLabels"])):
            expect(matches(sel, pod_labels), f"{what} does not select the server pods")
            expect(not matches(sel, job_labels), f"{what} selects the migration Job's pod")
        expect(svc["spec"]["ports"][0]["targetPort"] == "http", "Service targetPort")
        expect(pdb["spec"]["maxUnavailable"] == 1, "PDB maxUnavailable")

    @check("default: migration Job is a pre-install/pre-upgrade hook running `weft migrate`")
    def _():
        job = one(d, "Job")
        ann = job["metadata"]["annotations"]
        expect(set(ann["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}, ann["helm.sh/hook"])
        expect("before-hook-creation" in ann["helm.sh/hook-delete-policy"], "hook delete policy")
        c = job["spec"]["template"]["spec"]["containers"][0]
        expect(c["args"] == ["migrate"], f"args {c['args']}")
        expect(job["spec"]["template"]["spec"]["restartPolicy"] == "Never", "restartPolicy")
        expect(c["image"] == one(d, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"],
               "Job and Deployment images differ")

    @check("default: Grafana dashboard ConfigMap with grafana_dashboard: \"1\" holds dashboards/weft.json")
    def _():
        cm = one(d, "ConfigMap", "-dashboard")
        expect(cm["metadata"]["labels"].get("grafana_dashboard") == "1", "label grafana_dashboard")
        expect(json.loads(cm["data"]["weft.json"]) == json.loads(dash_text), "content differs from the file")

    # ---------------------------------------------------------------- production install
    p = objs.get("production", [])

    @check("production: HPA replaces fixed replicas; PDB minAvailable 2")
    def _():
        dep = one(p, "Deployment")
        expect("replicas" not in dep["spec"], "Deployment sets replicas while the HPA owns them")
        hpa = one(p, "HorizontalPodAutoscaler")
        ref = hpa["spec"]["scaleTargetRef"]
        expect((ref["kind"], ref["name"]) == ("Deployment", dep["metadata"]["name"]), f"target {ref}")
        expect(hpa["spec"]["minReplicas"] == 3, "minReplicas")
        expect(one(p, "PodDisruptionBudget")["spec"] == {
            "minAvailable": 2, "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": dep["spec"]["selector"]}, "PDB")

    @check("production: image by digest, Secret and credentials only by reference")
    def _():
        spec = one(p, "Deployment")["spec"]["template"]["spec"]
        c = spec["containers"][0]
        expect(c["image"].startswith("registry.example.com/platform/weft@sha256:"), c["image"])
        env = env_of(c)
        expect(env["WEFT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "weft-prod", "secret name")
        expect(env["SENDGRID_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "weft-prod", "extraEnv")
        expect(env["WEFT_PUBLIC_URL"]["value"] == "https://weft.example.com", "publicUrl")
        secret_vol = [v for v in spec["volumes"] if "secret" in v][0]
        expect(secret_vol["secret"]["secretName"] == "weft-prod", "secret volume")
        expect(spec["terminationGracePeriodSeconds"] == 60, "grace")
        expect(env["WEFT_SHUTDOWN__DRAIN_SECONDS"]["value"] == "30", "drain")
        expect(not [o for o in p if o["kind"] == "Secret"], "the chart must never create a Secret")

    @check("production: ServiceMonitor scrapes /metrics on the Service's http port")
    def _():
        sm = one(p, "ServiceMonitor")
        svc = one(p, "Service")
        expect(matches(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"]), "selector")
        ep = sm["spec"]["endpoints"][0]
        expect((ep["port"], ep["path"]) == ("http", "/metrics"), f"endpoint {ep}")
        expect(sm["metadata"]["labels"]["release"] == "kube-prometheus-stack", "labels")

    @check("production: PrometheusRule carries rules/weft-alerts.yaml, minus disabled alerts, plus labels")
    def _():
        pr = one(p, "PrometheusRule")
        got = rule_file_alerts(pr["spec"])
        want = [a for a in rule_file_alerts(rules_doc) if a["alert"] != "WeftVersionSkew"]
        expect([a["alert"] for a in got] == [a["alert"] for a in want], "alert names differ")
        for g, w in zip(got, want):
            expect(g["expr"] == w["expr"] and g["for"] == w["for"], f"{g['alert']} changed")
            expect(g["labels"] == {**w["labels"], "team": "messaging"}, f"{g['alert']} labels")
            expect(g["annotations"]["runbook_url"] == f"https://runbooks.example.com/weft#{w['alert'].lower()}",
                   f"{g['alert']} runbook_url")
            expect({k: v for k, v in g["annotations"].items() if k != "runbook_url"} == w["annotations"],
                   f"{g['alert']} annotations")

    @check("production: dashboard ConfigMap in the Grafana namespace; Ingress routes to the Service")
    def _():
        cm = one(p, "ConfigMap", "-dashboard")
        expect(cm["metadata"]["namespace"] == "monitoring", "namespace")
        expect(cm["metadata"]["annotations"] == {"grafana_folder": "Messaging"}, "annotations")
        ing = one(p, "Ingress")
        svc = one(p, "Service")
        backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        expect(backend == {"name": svc["metadata"]["name"], "port": {"name": "http"}}, f"backend {backend}")

    # ---------------------------------------------------------------- metrics contract
    contract = load_contract()

    @check("metric-names.txt lists exactly the DESIGN.md §7 metrics plus weft_build_info and weft_dispatch_throttled_total")
    def _():
        expect(len(contract) == 16, f"{len(contract)} metrics")
        expect({"weft_build_info", "weft_dispatch_throttled_total"} <= set(contract), "weft's own additions")
        expect({n for n, (t, _) in contract.items() if t == "histogram"} == {
            "weft_http_request_duration_seconds", "weft_dispatch_duration_seconds",
            "weft_accept_to_delivered_seconds"}, "histograms")

    @check("dashboard: every query parses and uses only contract metrics, labels and values")
    def _():
        dash = json.loads(dash_text)
        problems, used = [], set()
        n = 0
        for where, expr in dashboard_queries(dash):
            pr, u = metric_problems(expr, contract, where)
            problems += pr
            used |= u
            n += 1
        expect(not problems, "\n".join(problems))
        # The same expressions as recording rules, for Prometheus's own parser: check.sh
        # runs `promtool check rules` on this file.
        rules = [{"record": f"weft_dashboard:query_{i}", "expr": GRAFANA_VARS.sub("5m", e)}
                 for i, (_, e) in enumerate(dashboard_queries(dash))]
        (OUT_DIR / "dashboard-queries.rules.yaml").write_text(
            yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, sort_keys=False))
        unused = sorted(set(contract) - used)
        expect(not unused, f"metrics with no panel: {unused}")
        return f"{n} queries, all {len(contract)} metrics shown"

    @check("dashboard: unique panel ids, all on the 24-column grid, every target on ${datasource}")
    def _():
        dash = json.loads(dash_text)
        ids = [pn["id"] for pn in dash["panels"]]
        expect(len(ids) == len(set(ids)), "duplicate panel ids")
        for pn in dash["panels"]:
            g = pn["gridPos"]
            expect(g["x"] + g["w"] <= 24, f"{pn['title']} overflows the grid")
            for t in pn.get("targets", []):
                expect(t["datasource"]["uid"] == "${datasource}", f"{pn['title']} datasource")
        titles = " ".join(pn["title"].lower() for pn in dash["panels"])
        for needed in ("accepted", "delivered", "failed", "latency", "outbox", "dispatch errors",
                       "circuit", "inbound", "threading", "signature", "app webhook", "http error"):
            expect(needed in titles, f"no panel about {needed!r}")

    @check("alert rules: every expression uses only contract metrics, labels and values")
    def _():
        problems = []
        for a in rule_file_alerts(rules_doc):
            pr, _ = metric_problems(a["expr"], contract, f"alert {a['alert']}")
            problems += pr
        expect(not problems, "\n".join(problems))
        return f"{len(rule_file_alerts(rules_doc))} alerts"

    @check("alert rules: required alerts exist, each with severity, summary, description and runbook")
    def _():
        alerts = {a["alert"]: a for a in rule_file_alerts(rules_doc)}
        for needed in ("WeftDeliverySuccessRatioLow", "WeftOutboxOldestAgeGrowing",
                       "WeftConnectionCircuitOpen", "WeftWebhookSignatureFailureSpike",
                       "WeftAppWebhookDeliveriesFailing", "WeftAppWebhookBacklogBuilding",
                       "WeftAcceptLatencyHigh"):
            expect(needed in alerts, f"missing alert {needed}")
        for name, a in alerts.items():
            expect(a["labels"].get("severity") in {"warning", "critical"}, f"{name}: severity")
            for k in ("summary", "description", "runbook"):
                expect(a["annotations"].get(k, "").strip(), f"{name}: no {k} annotation")
            expect("for" in a, f"{name}: no `for`")
        # Runbooks point at dashboard panels by their quoted titles: those must exist.
        titles = {pn["title"] for pn in json.loads(dash_text)["panels"]} | {"weft"}
        for name, a in alerts.items():
            for quoted in re.findall(r'"([^"]+)"', a["annotations"]["runbook"]):
                expect(quoted in titles, f"{name}: runbook names panel {quoted!r}, which the dashboard lacks")

    @check("alert tests: helm/tests/alerts_test.yaml exercises every alert, firing and silent")
    def _():
        tests = yaml.safe_load((HELM_DIR / "tests" / "alerts_test.yaml").read_text())
        expect(tests["rule_files"] == ["../weft/rules/weft-alerts.yaml"], "rule_files")
        fired, silent = set(), set()
        for t in tests["tests"]:
            for a in t.get("alert_rule_test", []):
                (fired if a.get("exp_alerts") else silent).add(a["alertname"])
        alerts = {a["alert"] for a in rule_file_alerts(rules_doc)}
        expect(alerts <= fired, f"never shown firing: {sorted(alerts - fired)}")
        expect(alerts <= silent, f"never shown silent: {sorted(alerts - silent)}")

    passed = sum(1 for _, ok, _ in RESULTS if ok)
    failed = len(RESULTS) - passed
    print(f"helm: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
