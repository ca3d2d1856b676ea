"""Test-only mitmproxy script: send every upstream connection to 127.0.0.1.

The proxy decides on the real names (pypi.org, files.pythonhosted.org, ...);
only at the last moment, after azml-egress's own ``server_connect`` check, is
the address rewritten: port 80 goes to the local plain HTTP server, every other
port to the local HTTPS server. Ports come from ``AZML_TEST_HTTPS_PORT`` and
``AZML_TEST_HTTP_PORT``.
"""

import os


class RouteToLocal:
    def server_connect(self, data):
        if data.server.error or data.server.address is None:
            return
        _, port = data.server.address
        local = os.environ["AZML_TEST_HTTP_PORT"] if port == 80 else os.environ["AZML_TEST_HTTPS_PORT"]
        data.server.address = ("127.0.0.1", int(local))


addons = [RouteToLocal()]
