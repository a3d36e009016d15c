"""LAB STAND-IN -- NOT PRODUCT CODE, NOT OPEN-XCHANGE SOFTWARE.

``oxstandin`` imitates the command-line tools and the middleware service
of Open-Xchange App Suite closely enough for the ox-estate lab (network
namespaces running real Debian MariaDB/Apache/HAProxy), where OX's
proprietary packages cannot be installed.  It lives only under
``lab/standins/`` and is installed on lab hosts only.

Runs with Debian's /usr/bin/python3 and the apt package python3-pymysql.
"""

import os

#: Install root of the (imitated) OX installation.  ``OX_STANDIN_ROOT``
#: exists for the stand-in's own tests only; a lab host uses the default.
DEFAULT_ROOT = "/opt/open-xchange"


def ox_root():
    return os.environ.get("OX_STANDIN_ROOT") or DEFAULT_ROOT


def etc_dir():
    return os.path.join(ox_root(), "etc")
