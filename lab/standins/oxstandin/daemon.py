"""LAB STAND-IN helper -- NOT PRODUCT CODE.

Runs a stand-in service's listeners the way its init script expects: with --daemon, fork, detach
and report ready to the parent only once the listeners serve (so `init.d start` returns when the
service answers, as OX's own start scripts wait); write the pidfile; stop on SIGTERM/SIGINT and
remove the pidfile if it is still ours.
"""

import os
import select
import signal
import threading


def _detach(logfile, ready_timeout, log, what, servers):
    """Fork. The parent waits up to ready_timeout for the child's ready byte and returns its exit
    code; the child returns None with stdin on /dev/null and stdout/stderr on the log file."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(wfd)
        for srv in servers:
            srv.server_close()  # the child serves them
        ready, _, _ = select.select([rfd], [], [], ready_timeout)
        if ready and os.read(rfd, 16).startswith(b"R"):
            return 0, None
        log("FATAL: %s did not become ready within %.0fs" % (what, ready_timeout))
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
        return 1, None
    os.close(rfd)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    try:
        os.makedirs(os.path.dirname(logfile) or ".", exist_ok=True)
        logfd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    except OSError:
        logfd = devnull
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    return None, wfd


def serve(servers, opts, log, log_state, what, started):
    """Serve ``servers`` until SIGTERM/SIGINT. ``opts`` has daemon, pidfile, logfile and
    ready_timeout; ``log_state`` is the stand-in's LOG dict (its path is cleared once stderr is the
    log file); ``started`` is the line logged once serving."""
    wfd = None
    if opts.daemon:
        code, wfd = _detach(opts.logfile, opts.ready_timeout, log, what, servers)
        if code is not None:
            return code
        log_state["path"] = None  # stderr now is the log file
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    if opts.pidfile:
        tmp = opts.pidfile + ".tmp"
        with open(tmp, "w") as fh:
            fh.write("%d\n" % os.getpid())
        os.replace(tmp, opts.pidfile)
    log(started)
    if wfd is not None:
        os.write(wfd, b"R")
        os.close(wfd)
    stop.wait()
    log("stopping")
    for srv in servers:
        srv.shutdown()
        srv.server_close()
    try:
        with open(opts.pidfile) as fh:
            if fh.read().strip() == str(os.getpid()):
                os.unlink(opts.pidfile)
    except OSError:
        pass
    return 0
