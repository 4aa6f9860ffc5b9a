#!/usr/bin/env python3
"""Generate helm/weft/values.schema.json (committed; check.sh fails when it is stale).

Written as Python so that shared shapes (resources, probes, label maps) are defined once.
Draft-07, which every Helm 3 and Helm 4 release understands. Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "weft" / "values.schema.json"


def obj(props: dict, required: list[str] | None = None, extra: bool = False, **kw) -> dict:
    o = {"type": "object", "properties": props, "additionalProperties": extra, **kw}
    if required:
        o["required"] = required
    return o


def s(desc: str = "", **kw) -> dict:
    return {"type": "string", **({"description": desc} if desc else {}), **kw}


def i(desc: str = "", **kw) -> dict:
    return {"type": "integer", **({"description": desc} if desc else {}), **kw}


def b(desc: str = "") -> dict:
    return {"type": "boolean", **({"description": desc} if desc else {})}


STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
# Kubernetes objects passed through to the manifest as they are (validated later
# against the Kubernetes schema by check.sh).
K8S = {"type": "object"}
K8S_LIST = {"type": "array", "items": {"type": "object"}}
DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
DURATION = "^[0-9]+(ms|s|m|h)$"
QUANTITY = {"type": ["string", "integer", "number"]}
RESOURCES = obj(
    {
        "requests": {"type": "object", "additionalProperties": QUANTITY},
        "limits": {"type": "object", "additionalProperties": QUANTITY},
    }
)
PROBE = {"type": ["object", "null"], "description": "A Kubernetes probe; null disables it."}


def schema() -> dict:
    props = {
        "replicaCount": i("Replicas when autoscaling is disabled.", minimum=1),
        "image": obj(
            {
                "repository": s("Image repository.", minLength=1),
                "tag": s("Image tag; empty means the chart's appVersion."),
                "digest": {
                    "type": "string",
                    "description": "sha256 digest; wins over tag.",
                    "pattern": "^(sha256:[a-f0-9]{64})?$",
                },
                "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
            },
            required=["repository"],
        ),
        "imagePullSecrets": {
            "type": "array",
            "items": obj({"name": s(minLength=1)}, required=["name"]),
        },
        "nameOverride": s(maxLength=63),
        "fullnameOverride": s(maxLength=63),
        "existingSecret": obj(
            {
                "name": s(
                    "Secret holding the database URL and provider credentials; "
                    "empty means the release's full name.",
                    pattern=f"^$|{DNS_SUBDOMAIN}",
                    maxLength=253,
                ),
                "databaseUrlKey": s(
                    "Key of the PostgreSQL URL in the Secret (WEFT_DATABASE_URL).",
                    minLength=1,
                    pattern="^[-._a-zA-Z0-9]+$",
                ),
                "mountPath": s(
                    "Where the Secret's keys are mounted as files; empty: not mounted.",
                    pattern="^(/.*)?$",
                ),
            },
            required=["databaseUrlKey"],
        ),
        "publicUrl": s(
            "Base URL providers call back on (WEFT_PUBLIC_URL); empty: the in-cluster "
            "Service URL.",
            pattern="^(https?://[^\\s]+)?$",
        ),
        "containerPort": i(minimum=1024, maximum=65535),
        "shutdown": obj(
            {
                "drainSeconds": i("WEFT_SHUTDOWN__DRAIN_SECONDS", minimum=0),
                "preStopSleepSeconds": i("preStop sleep before SIGTERM; 0 disables.", minimum=0),
            },
            required=["drainSeconds", "preStopSleepSeconds"],
        ),
        "terminationGracePeriodSeconds": {
            "type": ["integer", "null"],
            "minimum": 1,
            "description": "null: preStopSleepSeconds + drainSeconds + 10.",
        },
        "config": s("weft.toml contents (no literal credentials)."),
        "extraEnv": {
            "type": "array",
            "items": obj(
                {"name": s(minLength=1), "value": s(), "valueFrom": K8S},
                required=["name"],
            ),
        },
        "extraEnvFrom": K8S_LIST,
        "serviceAccountName": s(pattern=f"^$|{DNS_SUBDOMAIN}"),
        "service": obj(
            {
                "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                "port": i(minimum=1, maximum=65535),
                "annotations": STRING_MAP,
            },
            required=["type", "port"],
        ),
        "ingress": obj(
            {
                "enabled": b(),
                "className": s(),
                "annotations": STRING_MAP,
                "hosts": {
                    "type": "array",
                    "items": obj(
                        {
                            "host": s(minLength=1),
                            "paths": {
                                "type": "array",
                                "items": obj(
                                    {
                                        "path": s(pattern="^/"),
                                        "pathType": {
                                            "enum": ["Prefix", "Exact", "ImplementationSpecific"]
                                        },
                                    },
                                    required=["path"],
                                ),
                            },
                        },
                        required=["host"],
                    ),
                },
                "tls": K8S_LIST,
            },
            required=["enabled"],
        ),
        "resources": RESOURCES,
        "startupProbe": PROBE,
        "livenessProbe": PROBE,
        "readinessProbe": PROBE,
        "podSecurityContext": K8S,
        "securityContext": K8S,
        "autoscaling": obj(
            {
                "enabled": b(),
                "minReplicas": i(minimum=1),
                "maxReplicas": i(minimum=1),
                "targetCPUUtilizationPercentage": i(minimum=1, maximum=100),
                "targetMemoryUtilizationPercentage": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": 100,
                },
                "behavior": K8S,
            },
            required=["enabled", "minReplicas", "maxReplicas"],
        ),
        "podDisruptionBudget": obj(
            {
                "enabled": b(),
                "maxUnavailable": {"type": ["integer", "string", "null"]},
                "minAvailable": {"type": ["integer", "string", "null"]},
            },
            required=["enabled"],
        ),
        "migrations": obj(
            {
                "enabled": b("Run `weft migrate` as a pre-install/pre-upgrade hook Job."),
                "backoffLimit": i(minimum=0),
                "activeDeadlineSeconds": i(minimum=1),
                "resources": RESOURCES,
            },
            required=["enabled"],
        ),
        "metrics": obj(
            {
                "serviceMonitor": obj(
                    {
                        "enabled": b(),
                        "interval": s(pattern=DURATION),
                        "scrapeTimeout": s(pattern=DURATION),
                        "labels": STRING_MAP,
                    },
                    required=["enabled"],
                ),
                "prometheusRule": obj(
                    {
                        "enabled": b(),
                        "labels": STRING_MAP,
                        "additionalRuleLabels": STRING_MAP,
                        "disabledAlerts": {"type": "array", "items": s(pattern="^Weft")},
                        "runbookBaseUrl": s(pattern="^(https?://.*)?$"),
                    },
                    required=["enabled"],
                ),
                "dashboard": obj(
                    {
                        "enabled": b(),
                        "namespace": s(pattern=f"^$|{DNS_LABEL}"),
                        "labels": STRING_MAP,
                        "annotations": STRING_MAP,
                    },
                    required=["enabled"],
                ),
            }
        ),
        "podAnnotations": STRING_MAP,
        "podLabels": STRING_MAP,
        "priorityClassName": s(),
        "nodeSelector": STRING_MAP,
        "tolerations": K8S_LIST,
        "affinity": K8S,
        "topologySpreadConstraints": {
            "type": ["array", "null"],
            "items": {"type": "object"},
            "description": "null: spread across nodes; [] disables spreading.",
        },
        "database": {
            "type": "object",
            "description": "Not configurable: the database URL, with its password, comes from "
            "existingSecret. Any key here fails the render with an explanation.",
        },
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "weft chart values",
        "type": "object",
        "additionalProperties": False,
        "properties": props,
        "required": ["image", "existingSecret", "shutdown", "service"],
    }


def render() -> str:
    return json.dumps(schema(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run python3 helm/tools/build_schema.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
