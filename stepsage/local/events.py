"""S3 "Object Created" events matched to the template's EventBridge rules and delivered to their Lambdas."""

from __future__ import annotations

import fnmatch
import ipaddress
import queue
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from stepsage.local.template import EventRule

# moto's S3 event names -> the `reason` S3 puts in its EventBridge events.
_REASONS = {
    "Put": "PutObject",
    "Post": "PostObject",
    "Copy": "CopyObject",
    "CompleteMultipartUpload": "CompleteMultipartUpload",
}
_DETAIL_TYPES = {"ObjectCreated": "Object Created", "ObjectRemoved": "Object Deleted"}


def _match_value(matcher: Any, value: Any, present: bool) -> bool:
    if not isinstance(matcher, dict):
        return present and value == matcher
    ((operator, argument),) = matcher.items()
    if operator == "exists":
        return present == bool(argument)
    if not present:
        return False
    text = value if isinstance(value, str) else None
    if operator == "prefix":
        if isinstance(argument, dict):
            return text is not None and text.lower().startswith(argument["equals-ignore-case"].lower())
        return text is not None and text.startswith(argument)
    if operator == "suffix":
        if isinstance(argument, dict):
            return text is not None and text.lower().endswith(argument["equals-ignore-case"].lower())
        return text is not None and text.endswith(argument)
    if operator == "equals-ignore-case":
        return text is not None and text.lower() == str(argument).lower()
    if operator == "wildcard":
        return text is not None and fnmatch.fnmatchcase(text, argument)
    if operator == "anything-but":
        if isinstance(argument, list):
            return value not in argument
        if isinstance(argument, dict):
            return not _match_value(argument, value, present)
        return value != argument
    if operator == "numeric":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        checks = {
            "<": float.__lt__,
            "<=": float.__le__,
            ">": float.__gt__,
            ">=": float.__ge__,
            "=": float.__eq__,
        }
        pairs = zip(argument[::2], argument[1::2], strict=True)
        return all(checks[op](float(value), float(bound)) for op, bound in pairs)
    if operator == "cidr":
        return text is not None and ipaddress.ip_address(text) in ipaddress.ip_network(argument)
    raise ValueError(f"unsupported EventBridge pattern operator {operator!r}")


def pattern_matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """EventBridge content filtering: every pattern field must match; a list matches if any entry does."""
    for key, expected in pattern.items():
        present = isinstance(event, dict) and key in event
        value = event.get(key) if isinstance(event, dict) else None
        if isinstance(expected, dict):
            if not present or not isinstance(value, dict) or not pattern_matches(expected, value):
                return False
            continue
        matchers = expected if isinstance(expected, list) else [expected]
        values = value if isinstance(value, list) else [value]
        if not any(_match_value(m, v, present) for m in matchers for v in values):
            return False
    return True


def s3_event(
    *,
    account_id: str,
    region: str,
    bucket: str,
    key: str,
    size: int,
    etag: str,
    version_id: str | None,
    reason: str,
) -> dict[str, Any]:
    """The event S3 sends to EventBridge for a new object, as documented by AWS (fresh id every time)."""
    now = datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": account_id,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": size,
                "etag": etag.strip('"'),
                **({"version-id": version_id} if version_id and version_id != "null" else {}),
                "sequencer": f"{int(now.timestamp() * 1e6):016X}",
            },
            "request-id": uuid.uuid4().hex[:16].upper(),
            "requester": account_id,
            "source-ip-address": "127.0.0.1",
            "reason": reason,
        },
    }


class EventDispatcher:
    """Delivers events to matching rules' targets on its own thread, outside the call that caused them."""

    def __init__(self, rules: list[EventRule], deliver: Callable[[str, dict[str, Any]], Any]) -> None:
        self.rules = rules
        self.deliver = deliver
        self.delivered: list[tuple[str, dict[str, Any]]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True, name="event-dispatcher")
        self._thread.start()

    def put(self, event: dict[str, Any]) -> None:
        self._queue.put(event)

    def _run(self) -> None:
        while (event := self._queue.get()) is not None:
            for rule in self.rules:
                if pattern_matches(rule.pattern, event):
                    for target in rule.target_function_ids:
                        self.delivered.append((target, event))
                        self.deliver(target, event)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)


_sinks: list[Callable[[dict[str, Any]], None]] = []
_installed = False


def install_moto_s3_hook(sink: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
    """Route moto's S3-to-EventBridge notifications to `sink` (moto's own EventBridge cannot reach a Lambda).

    Returns a function that removes the sink again.
    """
    global _installed
    from moto.s3 import notifications

    if not _installed:

        def send(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
            parts = event_name.split(":", 2)
            if len(parts) != 3 or parts[1] != "ObjectCreated":
                return
            action = parts[2]
            event = s3_event(
                account_id=account_id,
                region=bucket.region_name,
                bucket=bucket.name,
                key=key.name,
                size=key.size,
                etag=key.etag,
                version_id=key.version_id,
                reason=_REASONS.get(action, action),
            )
            for registered in list(_sinks):
                registered(event)

        notifications._send_event_bridge_message = send
        _installed = True
    _sinks.append(sink)
    return lambda: _sinks.remove(sink)
