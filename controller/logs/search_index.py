"""Search index URIs: which engine, where, and which index pattern.

``opensearch://host:port[/pattern]`` and ``elasticsearch://...`` (``opensearchs``,
``elasticsearchs`` for https) name the engine; controller/backends.py maps each scheme to its
adapter (opensearch-py for OpenSearch 2, the ``elasticsearch`` client for Elasticsearch 8/9).
"""

from __future__ import annotations

from urllib.parse import ParseResult, urlparse

DEFAULT_INDEX = "logs-tracectl-*"
# Searching a pattern that matches nothing yet (a fresh stack) is an empty result, not an error.
LENIENT = {"ignore_unavailable": True, "allow_no_indices": True}


def parse(uri: str, schemes: tuple[str, str]) -> tuple[str, str]:
    """(base URL, index pattern) of ``<scheme>://host:port[/pattern]``; SCHEMES: (http, https)."""
    parsed: ParseResult = urlparse(uri)
    if parsed.scheme not in schemes or not parsed.netloc:
        raise ValueError(f"not a {schemes[0]} URI ({schemes[0]}://host:port[/index]): {uri!r}")
    http = "https" if parsed.scheme == schemes[1] else "http"
    return f"{http}://{parsed.netloc}", parsed.path.strip("/") or DEFAULT_INDEX
