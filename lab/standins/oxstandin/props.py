"""LAB STAND-IN -- NOT PRODUCT CODE.  Java-style .properties helpers.

``set_property`` mimics OX's ``ox_set_property`` shell helper (from
oxfunctions.sh): replace ``key=value`` in place if the key exists,
otherwise append it; other lines (comments included) are kept, so
re-running is an idempotent overwrite.
"""

import os
import re
import tempfile


def read_properties(path):
    """Return a dict of the key/value pairs of a properties file ({} if absent)."""
    props = {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return props
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        m = re.match(r"^([^=:\s]+)\s*[=:]\s?(.*)$", line)
        if m:
            props[m.group(1)] = m.group(2)
    return props


def set_properties(path, values, mode=0o644):
    """Set several ``key=value`` pairs in ``path`` atomically (creates the file)."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        lines = []
    remaining = dict(values)
    out = []
    for line in lines:
        m = re.match(r"^([^=:\s#!]+)\s*[=:]", line)
        if m and m.group(1) in remaining:
            key = m.group(1)
            out.append("%s=%s" % (key, remaining.pop(key)))
        else:
            out.append(line)
    for key, val in remaining.items():
        out.append("%s=%s" % (key, val))
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("\n".join(out) + "\n")
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
