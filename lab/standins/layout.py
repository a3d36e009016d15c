"""LAB STAND-IN install layout -- NOT PRODUCT CODE.

``files()`` maps absolute target paths on a lab middleware host to the
source files in this directory; ``converter_files()`` does the same for a
lab document converter host.  Install each with mode 0755 if the source
is executable, else 0644 (``mode(src)`` tells which).
"""

import os
import pathlib
import stat

HERE = pathlib.Path(__file__).resolve().parent
OX_ROOT = "/opt/open-xchange"

TOOLS = ("initconfigdb", "oxinstaller", "registerserver", "registerfilestore", "registerdatabase",
         "listdatabase", "listfilestore", "listserver", "createcontext", "createuser",
         "unregisterdatabase", "unregisterfilestore", "unregisterserver", "listcontext",
         "changefilestore", "changecontext")


def files() -> "dict[str, pathlib.Path]":
    out = {}
    for tool in TOOLS:
        out["%s/sbin/%s" % (OX_ROOT, tool)] = HERE / "sbin" / tool
    for src in sorted((HERE / "oxstandin").glob("*.py")):
        out["%s/lib/oxstandin/%s" % (OX_ROOT, src.name)] = src
    out["%s/sbin/open-xchange" % OX_ROOT] = HERE / "middleware.py"
    out["/etc/init.d/open-xchange"] = HERE / "init.d" / "open-xchange"
    return out


def converter_files() -> "dict[str, pathlib.Path]":
    """The stand-in document converter: its service script, its init script, the shared lib."""
    out = {}
    for src in sorted((HERE / "oxstandin").glob("*.py")):
        out["%s/lib/oxstandin/%s" % (OX_ROOT, src.name)] = src
    out["%s/sbin/open-xchange-documentconverter-server" % OX_ROOT] = HERE / "documentconverter.py"
    out["/etc/init.d/open-xchange-documentconverter-server"] = HERE / "init.d" / "open-xchange-documentconverter-server"
    return out


def mode(src: pathlib.Path) -> int:
    return 0o755 if os.stat(src).st_mode & stat.S_IXUSR else 0o644


def install(root: str = "/") -> None:
    """Copy files() below ``root`` (for tests or chroots); a lab host uses root="/"."""
    for target, src in {**files(), **converter_files()}.items():
        dest = pathlib.Path(root) / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(src.read_bytes())
        dest.chmod(mode(src))


if __name__ == "__main__":
    for target, src in files().items():
        print("%s\t%s" % (target, src))
