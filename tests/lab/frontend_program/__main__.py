"""Test program for tests/lab/test_lab_frontend.py: ApacheFrontend on its own, run by the lab runner.

Until estate.py wires the frontend tier, this builds it the way the estate will: the stack's
config (the repository's stacks/Pulumi.<stack>.yaml, read through config.load()), static hosts,
one Backend per middleware node with role "backend", and the frontend hosts of the mode.
The middleware itself is not deployed here: the test starts stand-in backends on :8009.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import pulumi  # noqa: E402

from components.core import config  # noqa: E402
from components.web.frontend import ApacheFrontend, Backend  # noqa: E402
from components.estate import frontend_args  # noqa: E402
from components.core.hosts import static_hosts  # noqa: E402

cfg = config.load()
hosts = static_hosts(cfg, pulumi.Output.secret(cfg.secrets.ssh_private_key.get_secret_value()))
nodes = [n for n in cfg.middleware.nodes if n.role == "backend"]
backends = [Backend(n.host, hosts[n.host].address, n.jkroute) for n in nodes]
if cfg.frontend.mode == "colocated":
    web_hosts = [hosts[n.host] for n in nodes]
else:
    web_hosts = [hosts[n] for n in cfg.frontend.nodes]
frontend = ApacheFrontend("web", frontend_args(cfg, web_hosts, backends, []))

pulumi.export("frontendUrls", frontend.urls)
pulumi.export("frontendStatus", frontend.status)
