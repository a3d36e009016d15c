"""LAB STAND-IN -- NOT PRODUCT CODE.  Imitation of OX's Java CLT plumbing.

Modelled on com.openexchange.admin.console.{AdminParser,
BasicCommandlineOptions, ObjectNamingAbstraction}:

* options: ``-x value``, ``-xvalue``, ``--long value``, ``--long=value``;
* missing mandatory options -> stderr ``Error: Option(s) "a,b" missing``
  + usage, exit 104; unknown option -> ``Error: Unrecognized options on the
  command line: Unknown option '--foo'`` + usage, exit 111;
* failures are preceded by ``<object> could not be <verb>: `` on stderr;
* success lines such as ``database 4 registered`` go to stdout;
* table output = Java ``doOutput`` (columns separated by one space, ``%-Ns``
  left / ``%Ns`` right aligned); ``--csv`` = ``doCSVOutput``;
* ``-P`` may instead come from the ADMIN_PASSWORD environment variable,
  and a new user's ``-p`` from NEW_USER_PASSWORD (both exist in the real
  BasicCommandlineOptions.ENV_OPTIONS).
"""

import errno
import os
import socket
import sys

from . import config

SYSEXIT_INVALID_CREDENTIALS = 101
SYSEXIT_NO_SUCH_CONTEXT = 102
SYSEXIT_INVALID_DATA = 103
SYSEXIT_MISSING_OPTION = 104
SYSEXIT_COMMUNICATION_ERROR = 105
SYSEXIT_SERVERSTORAGE_ERROR = 106
SYSEXIT_REMOTE_ERROR = 107
SYSEXIT_NO_SUCH_USER = 108
SYSEXIT_ILLEGAL_OPTION_VALUE = 109
SYSEXIT_CONTEXT_ALREADY_EXISTS = 110
SYSEXIT_UNKNOWN_OPTION = 111

ENV_OPTIONS = ("RMI_HOSTNAME", "COMMANDLINE_TIMEZONE", "COMMANDLINE_DATEFORMAT",
               "ADMIN_PASSWORD", "NEW_USER_PASSWORD")


class CltError(Exception):
    """An error with the real tool's exit code; ``kind`` picks the output style."""

    def __init__(self, message, code=1, kind="error", usage=False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.kind = kind        # "error" -> "Error: msg"; "server" -> "Server response:\n msg"
        self.usage = usage


class Option:
    def __init__(self, short, long, desc, hasarg=True, needed=False, argdesc=None):
        self.short, self.long, self.desc = short, long, desc
        self.hasarg, self.needed, self.argdesc = hasarg, needed, argdesc


class AdminParser:
    def __init__(self, appname):
        self.appname = appname
        self.options = []
        self.values = {}
        self.add(Option("h", "help", "Prints a help text", hasarg=False))
        self.add(Option(None, "environment", "Show info about commandline environment", hasarg=False))
        self.add(Option(None, "nonl", "Remove all new lines (\\n) from output", hasarg=False))
        self.add(Option(None, "responsetimeout",
                        "response timeout in seconds for reading response from the backend (default 0s; infinite)",
                        argdesc="responsetimeout"))

    def add(self, opt):
        self.options.append(opt)
        return opt

    def _find(self, token):
        for opt in self.options:
            if token.startswith("--") and opt.long == token[2:]:
                return opt
            if len(token) == 2 and token[0] == "-" and opt.short == token[1]:
                return opt
        return None

    def parse(self, args):
        i = 0
        rest = []
        while i < len(args):
            tok = args[i]
            if tok == "--":
                rest.extend(args[i + 1:])
                break
            if tok.startswith("--"):
                name, eq, inline = tok.partition("=")
                opt = self._find(name)
                if opt is None:
                    raise CltError("Unrecognized options on the command line: Unknown option '%s'" % name,
                                   SYSEXIT_UNKNOWN_OPTION, usage=True)
                if opt.hasarg:
                    if eq:
                        val = inline
                    else:
                        i += 1
                        if i >= len(args):
                            raise CltError("Illegal option value : Option '%s' needs an argument" % name,
                                           SYSEXIT_ILLEGAL_OPTION_VALUE, usage=True)
                        val = args[i]
                    self.values[opt.long] = val
                else:
                    if eq:
                        raise CltError("Illegal option value : Option '%s' takes no argument" % name,
                                       SYSEXIT_ILLEGAL_OPTION_VALUE, usage=True)
                    self.values[opt.long] = True
            elif tok.startswith("-") and len(tok) > 1:
                opt = self._find(tok[:2])
                if opt is None:
                    raise CltError("Unrecognized options on the command line: Unknown option '%s'" % tok[:2],
                                   SYSEXIT_UNKNOWN_OPTION, usage=True)
                if opt.hasarg:
                    if len(tok) > 2:
                        val = tok[2:]
                    else:
                        i += 1
                        if i >= len(args):
                            raise CltError("Illegal option value : Option '%s' needs an argument" % tok,
                                           SYSEXIT_ILLEGAL_OPTION_VALUE, usage=True)
                        val = args[i]
                    self.values[opt.long] = val
                else:
                    if len(tok) > 2:
                        raise CltError("Unrecognized options on the command line: Unknown option '%s'" % tok,
                                       SYSEXIT_UNKNOWN_OPTION, usage=True)
                    self.values[opt.long] = True
            else:
                rest.append(tok)
            i += 1
        if rest:
            raise CltError("Unrecognized options on the command line: Unknown option '%s'" % rest[0],
                           SYSEXIT_UNKNOWN_OPTION, usage=True)
        if self.values.get("help"):
            self.print_usage()
            sys.exit(0)
        if self.values.get("environment"):
            for key in ENV_OPTIONS:
                val = os.environ.get(key)
                if key.endswith("PASSWORD") and val:
                    val = "<SET>"
                print("%s=%s" % (key, val if val else "<NOT SET>"))
            sys.exit(0)
        missing = [o.long for o in self.options if o.needed and o.long not in self.values]
        if missing:
            raise CltError('Option(s) "%s" missing' % ",".join(missing), SYSEXIT_MISSING_OPTION, usage=True)

    def get(self, long, default=None):
        return self.values.get(long, default)

    def print_usage(self):
        err = sys.stderr
        err.write("Usage: %s\n" % self.appname)
        for o in self.options:
            longpart = "--" + o.long + (" <%s>" % o.argdesc if o.hasarg and o.argdesc else "")
            if o.short:
                err.write(" %s,%-46s %-28s\n" % ("-" + o.short, longpart, o.desc))
            else:
                err.write(" %s %-46s %-28s\n" % ("  ", longpart, o.desc))


def add_credentials(parser):
    parser.add(Option("A", "adminuser", "Admin username", argdesc="adminuser"))
    parser.add(Option("P", "adminpass", "Admin password", argdesc="adminpass"))


def credentials(parser):
    """(user, password) -- ``-P`` wins over ADMIN_PASSWORD, as in the real CLTs."""
    password = parser.get("adminpass")
    if password is None:
        password = os.environ.get("ADMIN_PASSWORD") or None
    return parser.get("adminuser"), password


def check_master_auth(parser):
    if config.master_auth_disabled():
        return
    user, password = credentials(parser)
    if user is None and password is None:
        raise CltError('Options "adminuser, adminpass" missing', SYSEXIT_MISSING_OPTION, usage=True)
    stored = config.read_mpasswd().get(user or "")
    if not config.verify_password(password, stored):
        raise CltError("Authentication failed", SYSEXIT_INVALID_CREDENTIALS, kind="server")


def connect_admin_daemon():
    """Imitates ``Naming.lookup(RMI_HOSTNAME + ...)``: the admin daemon
    (the stand-in middleware) must answer on the RMI port."""
    host, port = config.rmi_endpoint()
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.settimeout(5)
            sock.sendall(b"PING\n")
            data = sock.recv(256)
    except OSError as exc:
        if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
            raise CltError("Connection refused to host: %s; nested exception is: \n"
                           "\tjava.net.ConnectException: Connection refused (Connection refused)" % host,
                           SYSEXIT_COMMUNICATION_ERROR)
        raise CltError("Error during JRMP connection establishment to host: %s; nested exception is: \n"
                       "\tjava.net.SocketException: %s" % (host, exc), SYSEXIT_REMOTE_ERROR, kind="server")
    if not data.startswith(b"OK"):
        raise CltError("Look-up failed. Service \"OXUtil_V2\" is not available.", 1, kind="server")


def run(objectname, verb, parser, args, body):
    """Run a tool the way the real ObjectNamingAbstraction.printErrors does."""
    try:
        parser.parse(args)
        body(parser)
        return 0
    except CltError as exc:
        nonl = bool(parser.values.get("nonl"))
        if verb:
            prefix = "%s could not be %s: " % (objectname, verb)
            if nonl:
                sys.stderr.write(prefix)
            else:
                sys.stderr.write(prefix + "\n")
        msg = exc.message.replace("\n", "") if nonl else exc.message
        if exc.kind == "server":
            sys.stderr.write("Server response:\n %s\n\n" % msg)
        elif exc.kind == "invalid":
            sys.stderr.write("Invalid input detected: %s\n" % msg)
        else:
            sys.stderr.write("Error: %s\n" % msg)
        if exc.usage:
            parser.print_usage()
        sys.stderr.flush()
        return exc.code


# --- output -------------------------------------------------------------------

def _strip(text, length, lastmark="~"):
    if text is None:
        return ""
    if len(text) > length:
        return text[:length - len(lastmark)] + lastmark
    return text


def do_output(alignments, columns, rows, out=None):
    """Java BasicCommandlineOptions.doOutput; alignments like "r", "l", "35l"."""
    out = out or sys.stdout
    sizes, aligns = [], []
    for i, spec in enumerate(alignments):
        num, align = spec[:-1], spec[-1]
        if num:
            size = int(num)
        else:
            size = max([len(columns[i])] + [len(r[i]) for r in rows if r[i] is not None])
        sizes.append(size)
        aligns.append(align)

    def fmt(values):
        parts = []
        for val, size, align in zip(values, sizes, aligns):
            parts.append(val.ljust(size) if align == "l" else val.rjust(size))
        return " ".join(parts) + "\n"

    out.write(fmt(columns))
    for row in rows:
        out.write(fmt([_strip(v, s) for v, s in zip(row, sizes)]))


def do_csv_output(columns, rows, out=None):
    out = out or sys.stdout
    out.write(",".join(columns) + "\n")
    for row in rows:
        out.write(",".join("" if v is None else '"%s"' % v.replace('"', '""') for v in row) + "\n")
