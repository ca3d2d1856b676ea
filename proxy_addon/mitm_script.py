"""Load azml-egress into a plain mitmdump:

    mitmdump -s "$(azml-egress addon-path)" --set azml_policy=config/policies/default.yaml

Options: azml_policy, azml_mode, azml_decision_log, azml_log_stdout (see proxy_addon.addon).
"""

from proxy_addon.addon import EgressPolicy

addons = [EgressPolicy()]
