"""Load azml-egress into a plain mitmdump:

    mitmdump -s "$(azml-egress addon-path)" --set azml_policy=config/policies/default.yaml

Options: azml_policy, azml_mode, azml_decision_log, azml_log_stdout (see
proxy_addon.addon), azml_metrics_host, azml_metrics_port (see
proxy_addon.runtime.MetricsExporter). Every load of this script builds its own
metrics registry, so reloading it never registers a metric twice.
"""

from proxy_addon.runtime import build_addons

addons = list(build_addons())
