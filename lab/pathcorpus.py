"""Request targets that try to reach SOAP or balancer-manager by a path spelling, from a small grammar.

Pure: `variants()` returns the same list every time, no I/O. The lab's frontend test sends each
one from a host outside the admin networks and checks, with the stand-in backend's record of what
a servlet container would dispatch, that none reaches an admin endpoint.

The grammar is the product of its axes, applied to the segments of each target:

    target   x  lead (dot segments, also through a proxied app prefix)
             x  join (how the target's segments are separated: '/', '//', an empty segment with a
                ;param, a backslash, %5c, %2f, '/./')
             x  param (a ;param on the first target segment)
             x  case  x  encoding (its first character %-encoded once or twice)
             x  method
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

TARGETS = {
    "soap": ("webservices", "OXContextService"),
    "axis2": ("servlet", "axis2", "services", "OXContextService"),
    "manager": ("balancer-manager", ""),  # "" : the trailing separator is a join too
}
LEADS = ("", "./", "x/../", "ajax/../", "ajax/..;/", "appsuite/api/..;/..;/", "ajax/%2e%2e/",
         "ajax/%252e%252e/", "ajax/.%2e/", "ajax/%c0%ae%c0%ae/", "infostore/..\\", "realtime/%2e%2e%5c")
JOINS = ("/", "//", "/;x/", "\\", "%5c", "%2f", "/./", "/%2e/")
PARAMS = ("", ";x", ";", ";jsessionid=1.OX1")
CASES = ("as-is", "upper", "title")
ENCODINGS = ("plain", "once", "twice")
METHODS = ("GET", "POST")


@dataclass(frozen=True)
class Variant:
    method: str
    path: str
    target: str  # a key of TARGETS

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _case(seg: str, how: str) -> str:
    if how == "upper":
        return seg.upper()
    if how == "title":
        return seg[:1].upper() + seg[1:]
    return seg


def _encode_first(seg: str, how: str) -> str:
    if how == "plain" or not seg:
        return seg
    code = f"%{ord(seg[0]):02x}"
    return (code if how == "once" else "%25" + code[1:]) + seg[1:]


def path_of(target: str, lead: str, join: str, param: str, case: str, encoding: str) -> str:
    first, *rest = TARGETS[target]
    first = _encode_first(_case(first, case), encoding) + param
    return "/" + lead + join.join([first, *rest])


def variants() -> list[Variant]:
    """Every distinct (method, path) of the grammar, in a stable order."""
    seen: dict[tuple[str, str], Variant] = {}
    for target, lead, join, param, case, encoding, method in product(
            TARGETS, LEADS, JOINS, PARAMS, CASES, ENCODINGS, METHODS):
        v = Variant(method, path_of(target, lead, join, param, case, encoding), target)
        seen.setdefault((v.method, v.path), v)
    return list(seen.values())
