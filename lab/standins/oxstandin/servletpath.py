"""LAB STAND-IN -- NOT PRODUCT CODE: how a servlet container maps a raw request path onto the
path it dispatches.

Tomcat (CoyoteAdapter.postParseRequest) and Grizzly (HttpRequestURIDecoder), which OX's HTTP
service runs on, do this in order:

1. drop the ``;params`` of every segment, on the raw path (``/a;x/b;y`` -> ``/a/b``);
2. percent-decode once (UTF-8);
3. turn ``\\`` into ``/`` (Grizzly; Tomcat with ALLOW_BACKSLASH, by default it refuses it);
4. merge empty segments, resolve ``.`` and ``..`` (a ``..`` above the root is refused: 400).

``dispatch(raw)`` is that path. ``candidates(raw)`` is every path some container, or a filter in
front of the servlet, might dispatch instead: decoding before the params are dropped (a decoded
``%3B`` then starts a param), decoding twice (a filter decoding ``getRequestURI()`` again), an
encoded slash taken as a slash, and overlong UTF-8 (``%c0%ae``) read as ASCII by old decoders.
Each rule takes its most lenient reading, so a path none of whose candidates lands on an admin
endpoint is safe for Tomcat and Grizzly alike. Pure functions; Python 3.9+ standard library.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

# Where SOAP provisioning (CXF under /webservices, Axis2 under /servlet/axis2/services) and
# Apache's balancer-manager live. Containers match case-sensitively; we compare ignoring case.
ADMIN_PREFIXES = ("/webservices", "/servlet/axis2/services", "/balancer-manager")

# Overlong UTF-8 forms of ASCII: 2 bytes (C0/C1 xx) and 3 bytes (E0 80-9F xx).
_OVERLONG2 = re.compile(rb"[\xc0\xc1][\x80-\xbf]")
_OVERLONG3 = re.compile(rb"\xe0[\x80-\x9f][\x80-\xbf]")


def _ascii2(m: re.Match) -> bytes:
    a, b = m.group(0)
    return bytes([((a & 0x1F) << 6) | (b & 0x3F)])


def _ascii3(m: re.Match) -> bytes:
    a, b, c = m.group(0)
    return bytes([((a & 0x0F) << 12) | ((b & 0x3F) << 6) | (c & 0x3F)])


def decode(path: str) -> str:
    """Percent-decode once; overlong UTF-8 forms of ASCII become that ASCII character."""
    raw = unquote_to_bytes(path)
    raw = _OVERLONG3.sub(_ascii3, _OVERLONG2.sub(_ascii2, raw))
    return raw.decode("utf-8", errors="replace")


def strip_params(path: str) -> str:
    """Drop the ;params of every segment."""
    return "/".join(seg.split(";", 1)[0] for seg in path.split("/"))


def resolve(path: str) -> str | None:
    """Backslashes as slashes, empty segments merged, dot segments resolved; None above the root."""
    segments = path.replace("\\", "/").split("/")
    out: list[str] = []
    for seg in segments:
        if seg in ("", "."):
            continue
        if seg == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(seg)
    trailing = segments[-1] in ("", ".", "..") and bool(out)
    return "/" + "/".join(out) + ("/" if trailing else "")


def _path_of(raw: str) -> str:
    return raw.split("?", 1)[0].split("#", 1)[0]


def dispatch(raw: str) -> str | None:
    """The path Grizzly or Tomcat dispatches for the raw request target `raw`; None: refused (400)."""
    return resolve(decode(strip_params(_path_of(raw))))


def candidates(raw: str) -> set[str]:
    """Every path a container or a filter in front of the servlet might dispatch for `raw`."""
    path = _path_of(raw)
    out: set[str] = set()
    for rounds in (1, 2):
        for params_first in (True, False):
            p = path
            for _ in range(rounds):
                p = decode(strip_params(p)) if params_first else strip_params(decode(p))
            for final in (p, strip_params(p)):
                resolved = resolve(final)
                if resolved is not None:
                    out.add(resolved)
    return out


def is_admin(path: str | None) -> bool:
    """Whether a dispatched path is SOAP or balancer-manager (ignoring case)."""
    if path is None:
        return False
    low = path.lower()
    return any(low == p or low.startswith(p + "/") for p in ADMIN_PREFIXES)


def admin_candidates(raw: str) -> list[str]:
    """The candidates of `raw` that land on an admin endpoint (empty: safe)."""
    return sorted(c for c in candidates(raw) if is_admin(c))
