"""The stack config's field types, and the checks every raw value passes before the model sees it.

Each type says what a value may be, in full (whole-string matches, no silent coercion), because
every value ends up in a script, a config file or a command line on a host. Messages never echo
more than a short prefix of a value (`show`), so a 10 MB value gives a one-line error.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

NAMESPACE = "ox-estate"

# Bounds on the raw config: past these a value is a mistake (or an attack), not an estate.
MAX_DEPTH = 8  # the deepest key path the model has is 5 levels
MAX_STRING = 1024  # every string but the SSH key; a 64 KB value is refused
MAX_SSH_KEY = 16384  # an RSA-8192 private key in PEM is about 6.5 KB
MAX_LIST = 1000  # hosts: issue 12 benchmarks estates up to 1,000 hosts
# Letters a value may not hold anywhere: C0 controls (newline, CR, tab, NUL ...) and DEL. A newline
# would end a heredoc or a config line early; no field of the model needs one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def show(value: Any) -> str:
    """A value for an error message: quoted, and cut short."""
    text = repr(value)
    return text if len(text) <= 48 else text[:40] + "...' (" + f"{len(str(value))} characters)"


class ProviderKind(StrEnum):
    AWS = "aws"
    STATIC = "static"


class Role(StrEnum):
    DB = "db"
    MW = "mw"
    WEB = "web"
    NFS = "nfs"
    DC = "dc"  # document converter nodes (documentConverter.nodes)


# --- raw input ------------------------------------------------------------------------------


def raw_problems(key: str, value: Any, multiline_ok: bool = False) -> list[tuple[str, str]]:
    """Problems in one top-level key's raw value that no model rule should have to meet: nesting
    too deep, lists too long, over-long strings, control characters, and snake_case spellings
    of camelCase keys (two spellings of one key would let one silently win)."""
    problems: list[tuple[str, str]] = []
    for path, item in _walk(key, value, 0, problems):
        if isinstance(item, str):
            limit = MAX_SSH_KEY if multiline_ok else MAX_STRING
            if len(item) > limit:
                problems.append((path, f"{show(item)} is longer than {limit} characters"))
            elif _CONTROL.search(item.replace("\r\n", "").replace("\n", "") if multiline_ok else item):
                problems.append((path, "holds a control character (newline, CR, tab, NUL ...): "
                                       "no value here may, since each lands in a script or a config line"))
    return problems


def _walk(path: str, value: Any, depth: int, problems: list) -> Iterator[tuple[str, Any]]:
    if depth > MAX_DEPTH:
        problems.append((path, f"nested deeper than {MAX_DEPTH} levels"))
        return
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{show(k) if not _KEY.fullmatch(str(k)) else k}"
            if not isinstance(k, str) or not _KEY.fullmatch(k):
                problems.append((sub, "is not a config key (camelCase letters and digits)"))
                continue
            yield from _walk(sub, v, depth + 1, problems)
    elif isinstance(value, list):
        if len(value) > MAX_LIST:
            problems.append((path, f"lists {len(value)} items; at most {MAX_LIST}"))
            return
        for i, v in enumerate(value):
            yield from _walk(f"{path}[{i}]", v, depth + 1, problems)
    else:
        yield path, value


_KEY = re.compile(r"[a-z][A-Za-z0-9]{0,63}")


# --- scalars without silent coercion -----------------------------------------------------------


def _whole_number(v: Any) -> int:
    # true/false are not numbers (pydantic would take true as 1); "41" is, since the CLI passes
    # plain values as text; 41.5 is not.
    if isinstance(v, bool):
        raise ValueError(f"a whole number is expected, not {str(v).lower()}")
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?[0-9]{1,19}", v):
        return int(v)
    raise ValueError(f"a whole number is expected, not {show(v)}")


def _boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return v == "true"
    raise ValueError(f"true or false is expected, not {show(v)}")


def Int(ge: int | None = None, le: int | None = None) -> Any:  # noqa: N802 (a type factory)
    return Annotated[int, BeforeValidator(_whole_number), Field(ge=ge, le=le)]


Bool = Annotated[bool, BeforeValidator(_boolean)]
Port = Int(1, 65535)
ServerId = Int(1, 4294967295)


def _matching(pattern: str, what: str):
    compiled = re.compile(pattern)

    def check(v: str) -> str:
        if not compiled.fullmatch(v):
            raise ValueError(f"{show(v)} is not {what}")
        return v

    return AfterValidator(check)


def Text(pattern: str, what: str) -> Any:  # noqa: N802 (a type factory)
    """A string matching `pattern` in full."""
    return Annotated[str, _matching(pattern, what)]


# --- names ----------------------------------------------------------------------------------

HostName = Text(r"[a-z][a-z0-9-]{0,62}", "a host name (lowercase letters, digits and '-', starting with a letter)")
HostRef = HostName
# A jkroute is the text after the first dot of JSESSIONID and must equal Apache's route= exactly,
# so no dots, separators or spaces (lab-findings: Apache balancer).
JkRoute = Text(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", "a valid route token: use 1-32 letters, digits, '-' or '_' "
               "(no dots: the route is what follows the first dot of JSESSIONID)")
# No value starts with '-': written as an argument, it would read as an option.
Token = Text(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}", "1-64 letters, digits, '-' or '_' (not starting with '-')")
# A database topology's name (database.galeraClusters[].name, gtidPairs[].name; configdb and
# userdbs name them): part of its resource names and of its OX database name (oxdb_<name>, '-' as '_').
DbName = Text(r"(?=.{1,32}$)[a-z][a-z0-9]*(-[a-z0-9]+)*", "a database topology name (1-32 lowercase letters, "
              "digits and single '-' between them, starting with a letter)")
# Another stack this one reads through StackReference: `<stack>`, `<project>/<stack>` or
# `<org>/<project>/<stack>`, as `pulumi stack ls` and StackReference write them.
StackName = Text(r"[A-Za-z0-9_.-]{1,100}(/[A-Za-z0-9_.-]{1,100}){0,2}", "a stack name: <org>/<project>/<stack> "
                 "(letters, digits, '.', '-' and '_')")
GaleraClusterName = Text(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,31}", "1-32 letters, digits, '-' or '_' (not starting with '-')")
ObjectName = Text(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", "1-64 letters, digits, '.', '-' or '_'")
UnixUser = Text(r"[a-z_][a-z0-9_-]{0,31}", "a Unix user name (lowercase letters, digits, '_' and '-')")
Email = Text(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,63}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+", "an email address")
LoginMapping = Text(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}", "a login mapping (a domain or name: letters, digits, "
                    "'.', '@', '-', '_'; no ',' since mappings are joined with it)")
RepositoryUrl = Text(r"https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?(/[A-Za-z0-9._/+-]*)?",
                     "an http(s) URL of letters, digits and . / + - (credentials go in repositoryUser and the "
                     "secret oxRepositoryPassword, never in the URL)")
RepositoryUser = Text(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}", "a repository login (letters, digits, . _ @ + -)")
_CONVERGE = r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}"
_CONVERGE_WHAT = "a converge token: 1-64 letters, digits or . _ : + - (for example $(date +%s))"
ConvergeToken = Text(_CONVERGE, _CONVERGE_WHAT)
DottedVersion = Text(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}", "a version like 10.11 or 7.10.6")
VpcId = Text(r"vpc-[0-9a-f]{8,17}", "a VPC id (vpc-…)")
SubnetId = Text(r"subnet-[0-9a-f]{8,17}", "a subnet id (subnet-…)")
S3Uri = Text(r"s3://[A-Za-z0-9][A-Za-z0-9._-]{0,254}", "an S3 filestore id (s3://<id>)")
InstanceType = Text(r"[a-z][a-z0-9-]*\.[a-z0-9]+", "an EC2 instance type (e.g. m6i.large)")
SqlMode = Text(r"\s*[A-Za-z_]+\s*(,\s*[A-Za-z_]+\s*)*", "a comma-separated list of sql_mode names")
GcacheSize = Text(r"[1-9][0-9]{0,5}[MG]", "a size in M or G, like 128M or 2G")


def converge_token(v: str) -> str:
    """The `converge` rule, for callers outside the model (remote.py checks the token it renders)."""
    if not re.fullmatch(_CONVERGE, v):
        raise ValueError(f"{show(v)} is not {_CONVERGE_WHAT}")
    return v


# --- paths ----------------------------------------------------------------------------------

# System trees a filestore must never be, or live under: exporting one hands it to open-xchange,
# read-write, on every middleware node.
_SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/dev",
                 "/proc", "/sys", "/run", "/root", "/var/lib/mysql", "/var/lib/dpkg", "/var/lib/apt",
                 "/opt/open-xchange", "/var/log")
_SYSTEM_DIRS = ("/", "/var", "/var/lib", "/var/opt", "/opt", "/srv", "/home", "/tmp", "/var/tmp", "/mnt", "/media")


def _data_dir(v: str) -> str:
    # A segment starts with a letter, digit or '_': so no '.' or '..' segment, and no hidden one.
    if not re.fullmatch(r"(/[A-Za-z0-9_][A-Za-z0-9._-]{0,63}){1,16}", v):
        raise ValueError(f"{show(v)} is not an absolute path of plain segments (letters, digits, . _ -, "
                         "each starting with a letter, digit or _; no '.' or '..', no '//', no trailing '/')")
    if v in _SYSTEM_DIRS or any(v == t or v.startswith(t + "/") for t in _SYSTEM_TREES):
        raise ValueError(f"{show(v)} is a system directory: the filestore gets a directory of its own "
                         "(e.g. /var/opt/filestore)")
    return v


DataDir = Annotated[str, AfterValidator(_data_dir)]


# --- networks -------------------------------------------------------------------------------


def _cidr(v: Any) -> ipaddress.IPv4Network:
    if not isinstance(v, (str, ipaddress.IPv4Network)):
        raise ValueError(f"{show(v)} is not an IPv4 CIDR")
    try:
        return ipaddress.IPv4Network(str(v), strict=True)
    except ValueError as e:
        raise ValueError(f"{show(v)} is not an IPv4 CIDR: {str(e)[:80]}") from None


def _trusted_cidr(v: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    # A network that trusted access (SSH, SOAP, balancer-manager) is opened to: /0 is everyone,
    # and anything wider than a /8 is not a network an operator administers from.
    if v.prefixlen < 8:
        raise ValueError(f"{v} admits {'everyone' if v.prefixlen == 0 else 'far too many addresses'}: "
                         "name the networks you administer from (/8 or narrower)")
    return v


def _address(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{show(v)} is not an IPv4 address")
    try:
        address = ipaddress.IPv4Address(v)
    except ValueError:
        raise ValueError(f"{show(v)} is not an IPv4 address") from None
    if address.is_unspecified or address.is_multicast or address.is_reserved or address.is_link_local \
            or address == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"{address} is not a host's address (unspecified, broadcast, multicast, link-local "
                         "or reserved)")
    return str(address)


def _floating_address(v: Any) -> str:
    """A floating (keepalived) address with its network's prefix, as `ip addr` writes it: the
    prefix says which network the peers share, so the address can be checked against theirs."""
    if not isinstance(v, str) or "/" not in v:
        raise ValueError(f"{show(v)} is not an address with its network's prefix (e.g. 10.0.0.100/24)")
    text, _, prefix = v.partition("/")
    address = ipaddress.IPv4Address(_address(text))
    if not re.fullmatch(r"[0-9]{1,2}", prefix) or not 8 <= int(prefix) <= 30:
        raise ValueError(f"{show(v)}: the prefix must be 8-30 (the peers' network, e.g. /24)")
    network = ipaddress.IPv4Network(f"{text}/{prefix}", strict=False)
    if address in (network.network_address, network.broadcast_address):
        raise ValueError(f"{show(v)} is the network's {'network' if address == network.network_address else 'broadcast'}"
                         " address, not one a host can hold")
    return f"{address}/{prefix}"


Cidr = Annotated[Any, AfterValidator(_cidr)]
TrustedCidr = Annotated[Any, AfterValidator(_cidr), AfterValidator(_trusted_cidr)]
Address = Annotated[Any, AfterValidator(_address)]
FloatingAddress = Annotated[Any, AfterValidator(_floating_address)]
# A VRRP virtual router id: peers on one network with the same id would take each other's adverts.
VrrpRouterId = Annotated[int, BeforeValidator(_whole_number), Field(ge=1, le=255)]


def _host_or_address(v: str) -> str:
    if re.fullmatch(r"[0-9.]+", v):
        return _address(v)
    if not re.fullmatch(r"(?=.{1,253}\Z)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*", v):
        raise ValueError(f"{show(v)} is neither an IPv4 address nor a DNS name")
    return v


HostOrAddress = Annotated[str, AfterValidator(_host_or_address)]
