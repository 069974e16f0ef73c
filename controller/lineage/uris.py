"""Repository locations as URIs for published lineage: file:// for paths, no credentials."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

_SCP = re.compile(r"^(?:[\w.-]+@)?([\w.-]+):(?!//)(.*)$")


def repo_uri(repo: str) -> str:
    """REPO as a URI: a local path becomes file://, user:password@ is dropped from URLs.

    scp-like ssh (git@host:org/x.git) becomes ssh://host/org/x.git; a token in a URL must
    never reach a lineage receiver, which may be shared more widely than the controller.
    """
    if "://" not in repo:
        scp = _SCP.match(repo)
        if scp and not Path(repo).expanduser().exists():
            return f"ssh://{scp.group(1)}/{scp.group(2).lstrip('/')}"
        return Path(repo).expanduser().resolve().as_uri()
    parts = urlsplit(repo)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
