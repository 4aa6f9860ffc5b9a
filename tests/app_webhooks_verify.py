#!/usr/bin/env python3
"""Verifies weft's app webhook deliveries with the official Standard Webhooks library.

Usage: app_webhooks_verify.py FILE, where FILE is JSON written by tests/it/app_webhooks.rs:
    {"secret": "whsec_...", "deliveries": [{"headers": {...}, "body": "<raw body>"}, ...]}

Every delivery must verify and parse to {"type", "timestamp", "data"}; a tampered body, a
wrong secret and a stale timestamp must each be rejected. Exits non-zero on any failure.
"""

import base64
import json
import sys
from datetime import datetime

from importlib.metadata import version

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

EVENT_TYPES = {
    "message.received",
    "message.status_updated",
    "conversation.created",
    "conversation.closed",
}


def must_reject(wh, body, headers, what):
    try:
        wh.verify(body, headers)
    except WebhookVerificationError:
        return
    raise AssertionError(f"{what} was accepted")


def main(path):
    with open(path, encoding="utf-8") as f:
        spec = json.load(f)
    secret = spec["secret"]
    deliveries = spec["deliveries"]
    assert deliveries, "no deliveries to verify"
    wh = Webhook(secret)
    other = Webhook("whsec_" + base64.b64encode(b"\x01" * 32).decode())
    for d in deliveries:
        headers, body = d["headers"], d["body"]
        payload = wh.verify(body, headers)
        assert set(payload) == {"type", "timestamp", "data"}, payload
        assert payload["type"] in EVENT_TYPES, payload["type"]
        datetime.fromisoformat(payload["timestamp"].replace("Z", "+00:00"))
        assert isinstance(payload["data"], dict), payload
        assert headers["webhook-id"].startswith("evt_"), headers
        must_reject(wh, body + " ", headers, "a tampered body")
        must_reject(other, body, headers, "another secret")
        stale = dict(headers, **{"webhook-timestamp": str(int(headers["webhook-timestamp"]) - 3600)})
        must_reject(wh, body, stale, "a stale timestamp")
    print(f"standardwebhooks {version('standardwebhooks')}: {len(deliveries)} deliveries verified")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
