"""Load azml-egress into a plain mitmdump:

    mitmdump -s "$(azml-egress addon-path)" --set azml_policy=config/policies/default.yaml

Options: azml_policy, azml_mode, azml_decision_log, azml_log_stdout, azml_resolve,
azml_watch (see proxy_addon.addon), azml_metrics_host, azml_metrics_port (see
proxy_addon.metrics_addon.MetricsExporter). Every load of this script builds its own
metrics registry, so reloading it never registers a metric twice. If the
package cannot be imported, every request is refused (the proxy fails closed
rather than running without its allowlist).
"""

import logging

try:
    from proxy_addon.guard import ConnectionGuard
    from proxy_addon.metrics_addon import build_addons

    _egress, _exporter = build_addons()
    addons = [ConnectionGuard(_egress), _egress, _exporter]
except Exception as _error:  # noqa: BLE001 - fail closed
    logging.error(f"azml-egress could not be loaded ({_error!r}); refusing every request")

    class _RefuseEverything:
        def http_connect(self, flow):
            from mitmproxy import http

            flow.response = http.Response.make(503, b"azml-egress failed to load; refusing\n")

        def requestheaders(self, flow):
            self.http_connect(flow)

        def server_connect(self, data):
            data.server.error = "azml-egress failed to load"

    addons = [_RefuseEverything()]
