"""azml-egress: an egress allowlist proxy for Azure Machine Learning, built on mitmproxy.

The pure core (hostnames, patterns, catalog, policy, decision, config) imports
neither mitmproxy nor prometheus_client; ``addon`` and ``runtime`` adapt it to
mitmproxy.
"""

__version__ = "0.1.0"
