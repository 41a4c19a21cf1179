"""Small HTTP rules the REST connectors share: where a bearer token may go, and how long Retry-After asks to wait."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit


def origin(url: str) -> str:
    """scheme://host:port of a URL, lower-case, with the default port made explicit."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}".lower()


def same_origin(url: str, endpoint: str) -> bool:
    """Whether ``url`` (e.g. an ``@odata.nextLink`` a response names) is on the configured endpoint's origin."""
    try:
        return origin(url) == origin(endpoint)
    except ValueError:
        return False


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as delay-seconds or as an HTTP-date (RFC 9110 section 10.2.3); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
