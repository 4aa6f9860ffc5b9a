#!/usr/bin/env python3
"""Generate helm/weft/dashboards/weft.json, the weft Grafana dashboard.

The JSON is committed (the chart ships it as it is); this script is its source. Edit the
panels here, run `python3 helm/tools/build_dashboard.py`, commit both. helm/check.sh fails
when the two disagree, and checks every query against helm/metric-names.txt.

Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "weft" / "dashboards" / "weft.json"

DS = {"type": "prometheus", "uid": "${datasource}"}
# Every selector is scoped to the chosen installation(s).
SCOPE = 'namespace=~"$namespace", job=~"$job"'
RATE = "$__rate_interval"

FAILED = "failed|undeliverable|expired"
FINAL = "delivered|" + FAILED
# Extra label matchers, kept out of f-strings (no backslashes in f-string expressions
# before Python 3.12).
M_DELIVERED = 'status="delivered"'
M_FINAL = f'status=~"{FINAL}"'
M_FAILED_OR_REJECTED = f'status=~"{FAILED}|rejected"'
M_OK = 'outcome="ok"'
M_NOT_OK = 'outcome!="ok"'
M_5XX = 'status=~"5.."'
M_4XX = 'status=~"4.."'


def sel(metric: str, extra: str = "") -> str:
    """A vector selector with the dashboard's scope and optional extra matchers."""
    inner = SCOPE + (", " + extra if extra else "")
    return f"{metric}{{{inner}}}"


def rate(metric: str, extra: str = "", window: str = RATE) -> str:
    return f"rate({sel(metric, extra)}[{window}])"


def quantile(q: float, metric: str, by: str, extra: str = "") -> str:
    return (
        f"histogram_quantile({q}, sum by ({by}, le) "
        f"(rate({sel(metric + '_bucket', extra)}[{RATE}])))"
    )


class Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self) -> None:
        self.panels: list[dict] = []
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def _place(self, w: int, h: int) -> dict:
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        pos = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self.x:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        self.panels.append(
            {
                "id": self._id(),
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        self.y += 1

    def _id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def add(self, panel: dict, w: int, h: int) -> None:
        panel["id"] = self._id()
        panel["gridPos"] = self._place(w, h)
        self.panels.append(panel)


def targets(*queries: tuple[str, str]) -> list[dict]:
    return [
        {"datasource": DS, "refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
        for i, (expr, legend) in enumerate(queries)
    ]


def timeseries(
    title: str,
    description: str,
    *queries: tuple[str, str],
    unit: str = "short",
    stack: bool = False,
    max_value: float | None = None,
    draw: str = "line",
) -> dict:
    defaults: dict = {
        "unit": unit,
        "min": 0,
        "custom": {
            "drawStyle": draw,
            "lineWidth": 1,
            "fillOpacity": 20 if stack else 10,
            "showPoints": "never",
            "spanNulls": True,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
    }
    if max_value is not None:
        defaults["max"] = max_value
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets(*queries),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    description: str,
    query: str,
    unit: str,
    steps: list[tuple[float | None, str]],
    legend: str = "",
) -> dict:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets((query, legend)),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"value": v, "color": c} for v, c in steps],
                },
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "textMode": "auto",
        },
    }


def build() -> dict:
    L = Layout()

    # ---------------------------------------------------------------- overview
    L.row("Overview")
    L.add(
        stat(
            "Accepted / s",
            "Messages accepted by POST /v1/messages, all channels.",
            f"sum({rate('weft_messages_accepted_total')})",
            "reqps",
            [(None, "blue")],
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Delivery success (1h)",
            "Delivered among messages that reached a final state in the last hour "
            "(delivered, failed, undeliverable, expired). Rejected sends are not counted.",
            f"sum(increase({sel('weft_message_status_total', M_DELIVERED)}[1h]))"
            f" / sum(increase({sel('weft_message_status_total', M_FINAL)}[1h]))",
            "percentunit",
            [(None, "red"), (0.9, "orange"), (0.97, "green")],
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Outbox depth",
            "Messages accepted but not yet handed to a provider.",
            f"max({sel('weft_outbox_depth')})",
            "short",
            [(None, "green"), (1000, "orange"), (10000, "red")],
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Oldest in outbox",
            "How long the oldest due, undispatched message has waited (messages scheduled for later, and retries backing off, count from their time).",
            f"max({sel('weft_outbox_oldest_age_seconds')})",
            "s",
            [(None, "green"), (60, "orange"), (300, "red")],
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Open circuits",
            "Connections whose circuit breaker is open on at least one replica.",
            f"count(max by (connection) ({sel('weft_connection_circuit_open')}) > 0) or vector(0)",
            "short",
            [(None, "green"), (1, "red")],
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Replicas by version",
            "Running weft processes per version (weft_build_info).",
            f"count by (version) ({sel('weft_build_info')})",
            "short",
            [(None, "blue")],
            legend="{{version}}",
        ),
        4,
        4,
    )

    # ---------------------------------------------------------------- messages
    L.row("Messages")
    L.add(
        timeseries(
            "Accepted by channel",
            "Messages accepted per second, by channel.",
            (f"sum by (channel) ({rate('weft_messages_accepted_total')})", "{{channel}}"),
            unit="reqps",
            stack=True,
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Delivered by channel",
            "Messages reaching `delivered` per second, by channel.",
            (
                f"sum by (channel) ({rate('weft_message_status_total', M_DELIVERED)})",
                "{{channel}}",
            ),
            unit="reqps",
            stack=True,
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Failed by channel",
            "Messages ending failed, undeliverable, expired or rejected per second.",
            (
                f"sum by (channel, status) "
                f"({rate('weft_message_status_total', M_FAILED_OR_REJECTED)})",
                "{{channel}} {{status}}",
            ),
            unit="reqps",
            stack=True,
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Message status transitions",
            "Status changes per second, by status (all channels).",
            (f"sum by (status) ({rate('weft_message_status_total')})", "{{status}}"),
            unit="reqps",
            stack=True,
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Delivery success ratio by channel",
            "delivered / (delivered + failed + undeliverable + expired), per channel.",
            (
                f"sum by (channel) ({rate('weft_message_status_total', M_DELIVERED)})"
                f" / sum by (channel) ({rate('weft_message_status_total', M_FINAL)})",
                "{{channel}}",
            ),
            unit="percentunit",
            max_value=1,
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Accept → delivered latency",
            "Time from accept (202) to the delivered receipt: p50, p90 and p99 by channel.",
            (quantile(0.5, "weft_accept_to_delivered_seconds", "channel"), "p50 {{channel}}"),
            (quantile(0.9, "weft_accept_to_delivered_seconds", "channel"), "p90 {{channel}}"),
            (quantile(0.99, "weft_accept_to_delivered_seconds", "channel"), "p99 {{channel}}"),
            unit="s",
        ),
        8,
        8,
    )

    # ---------------------------------------------------------------- dispatch
    L.row("Dispatch and providers")
    L.add(
        timeseries(
            "Dispatch attempts by provider",
            "Provider API calls per second, by provider and outcome.",
            (
                f"sum by (provider, outcome) ({rate('weft_dispatch_attempts_total')})",
                "{{provider}} {{outcome}}",
            ),
            unit="reqps",
            stack=True,
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Dispatch errors by outcome",
            "Attempts that did not succeed: retryable, permanent, throttled, timeout.",
            (
                f"sum by (outcome) ({rate('weft_dispatch_attempts_total', M_NOT_OK)})",
                "{{outcome}}",
            ),
            (
                f"sum by (provider, channel) "
                f"({rate('weft_dispatch_attempts_total', M_NOT_OK)})",
                "{{provider}} / {{channel}}",
            ),
            unit="reqps",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Dispatch success ratio by provider",
            "Share of provider calls with outcome ok.",
            (
                f"sum by (provider) ({rate('weft_dispatch_attempts_total', M_OK)})"
                f" / sum by (provider) ({rate('weft_dispatch_attempts_total')})",
                "{{provider}}",
            ),
            unit="percentunit",
            max_value=1,
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Dispatch duration by provider",
            "Provider API call latency: p50 and p99.",
            (quantile(0.5, "weft_dispatch_duration_seconds", "provider"), "p50 {{provider}}"),
            (quantile(0.99, "weft_dispatch_duration_seconds", "provider"), "p99 {{provider}}"),
            unit="s",
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Outbox",
            "Undispatched messages, scheduled ones included (left axis), and how long the oldest due one has waited (right axis).",
            (f"max({sel('weft_outbox_depth')})", "depth"),
            (f"max({sel('weft_outbox_oldest_age_seconds')})", "oldest age"),
        ),
        8,
        8,
    )
    outbox = L.panels[-1]
    outbox["fieldConfig"]["overrides"] = [
        {
            "matcher": {"id": "byName", "options": "oldest age"},
            "properties": [
                {"id": "unit", "value": "s"},
                {"id": "custom.axisPlacement", "value": "right"},
            ],
        }
    ]
    circuit = {
        "type": "state-timeline",
        "title": "Circuit state per connection",
        "description": "Open when any replica's circuit breaker for the connection is open.",
        "datasource": DS,
        "targets": targets(
            (f"max by (connection) ({sel('weft_connection_circuit_open')})", "{{connection}}")
        ),
        "fieldConfig": {
            "defaults": {
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            "0": {"text": "closed", "color": "green"},
                            "1": {"text": "open", "color": "red"},
                        },
                    }
                ],
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"value": None, "color": "green"}, {"value": 1, "color": "red"}],
                },
            },
            "overrides": [],
        },
        "options": {"showValue": "never", "mergeValues": True, "rowHeight": 0.8},
    }
    L.add(circuit, 8, 8)
    L.add(
        timeseries(
            "Throttled sends by connection",
            "Messages a rate limit (the connection's or a sender's) put back in the outbox for a "
            "reserved later slot. Sustained throttling means the connection is under-provisioned "
            "for its traffic; other connections are not slowed by it.",
            (
                f"sum by (connection, limit) ({rate('weft_dispatch_throttled_total')})",
                "{{connection}} ({{limit}})",
            ),
            unit="ops",
            stack=True,
        ),
        24,
        8,
    )

    # ---------------------------------------------------------------- inbound
    L.row("Inbound and threading")
    L.add(
        timeseries(
            "Inbound by provider and channel",
            "Verified inbound messages and calls per second.",
            (
                f"sum by (provider, channel) ({rate('weft_inbound_total')})",
                "{{provider}} / {{channel}}",
            ),
            unit="reqps",
            stack=True,
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Threading decisions by rule",
            "Which rung of the key ladder threaded each inbound message "
            "(explicit, reply_ref, lease, contact, new).",
            (f"sum by (rule) ({rate('weft_threading_decisions_total')})", "{{rule}}"),
            unit="reqps",
            stack=True,
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Webhook signature failures",
            "Provider webhooks refused for a bad or missing signature, by provider. "
            "Anything above zero deserves a look (publicUrl, rotated credentials, forgeries).",
            (
                f"sum by (provider) ({rate('weft_webhook_signature_failures_total')})",
                "{{provider}}",
            ),
            unit="reqps",
        ),
        8,
        8,
    )

    # ---------------------------------------------------------------- app webhooks
    L.row("App webhooks")
    L.add(
        timeseries(
            "App webhook deliveries by outcome",
            "Signed event deliveries to application endpoints per second.",
            (
                f"sum by (outcome) ({rate('weft_app_webhook_deliveries_total')})",
                "{{outcome}}",
            ),
            unit="reqps",
            stack=True,
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "App webhook failure ratio",
            "Share of deliveries that did not succeed (retried from the durable queue).",
            (
                f"sum({rate('weft_app_webhook_deliveries_total', M_NOT_OK)})"
                f" / sum({rate('weft_app_webhook_deliveries_total')})",
                "failed",
            ),
            unit="percentunit",
            max_value=1,
        ),
        12,
        8,
    )

    # ---------------------------------------------------------------- HTTP
    L.row("HTTP API")
    L.add(
        timeseries(
            "Requests by route",
            "HTTP requests per second by route and method.",
            (
                f"sum by (method, route) ({rate('weft_http_requests_total')})",
                "{{method}} {{route}}",
            ),
            unit="reqps",
            stack=True,
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "HTTP error rate by route",
            "Share of responses with status 5xx (and 4xx, dashed) per route.",
            (
                f"sum by (route) ({rate('weft_http_requests_total', M_5XX)})"
                f" / sum by (route) ({rate('weft_http_requests_total')})",
                "5xx {{route}}",
            ),
            (
                f"sum by (route) ({rate('weft_http_requests_total', M_4XX)})"
                f" / sum by (route) ({rate('weft_http_requests_total')})",
                "4xx {{route}}",
            ),
            unit="percentunit",
        ),
        8,
        8,
    )
    errors = L.panels[-1]
    errors["fieldConfig"]["overrides"] = [
        {
            "matcher": {"id": "byRegexp", "options": "^4xx .*"},
            "properties": [
                {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}}
            ],
        }
    ]
    L.add(
        timeseries(
            "HTTP latency by route",
            "Request latency p50 and p99 by route. POST /v1/messages answers after the "
            "durable commit, so its p99 tracks database latency.",
            (quantile(0.5, "weft_http_request_duration_seconds", "route"), "p50 {{route}}"),
            (quantile(0.99, "weft_http_request_duration_seconds", "route"), "p99 {{route}}"),
            unit="s",
        ),
        8,
        8,
    )

    variable_common = {
        "datasource": DS,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
        "type": "query",
    }
    return {
        "title": "weft",
        "uid": "weft-gateway",
        "description": "weft messaging gateway: sends, deliveries, dispatch, inbound, "
        "threading, app webhooks and the HTTP API. Metrics: helm/metric-names.txt.",
        "tags": ["weft", "messaging"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    **variable_common,
                    "name": "namespace",
                    "label": "Namespace",
                    "definition": "label_values(weft_build_info, namespace)",
                    "query": {
                        "query": "label_values(weft_build_info, namespace)",
                        "refId": "namespace",
                    },
                },
                {
                    **variable_common,
                    "name": "job",
                    "label": "Job",
                    "definition": 'label_values(weft_build_info{namespace=~"$namespace"}, job)',
                    "query": {
                        "query": 'label_values(weft_build_info{namespace=~"$namespace"}, job)',
                        "refId": "job",
                    },
                },
            ]
        },
        "panels": L.panels,
    }


def render() -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(
                f"{OUT} is out of date: run python3 helm/tools/build_dashboard.py",
                file=sys.stderr,
            )
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
