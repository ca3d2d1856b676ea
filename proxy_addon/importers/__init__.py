"""Importers: existing Azure Firewall rules as azml-egress policy files.

:func:`import_firewall` reads an Azure Firewall JSON export
(:mod:`.azure_firewall`) and writes a policy file (:mod:`.to_policy`). Pure:
no mitmproxy import.
"""

from __future__ import annotations

from pathlib import Path

from .azure_firewall import Imported, load_firewall_json, read_firewall_json
from .values import json_path
from .to_policy import policy_yaml


def import_firewall(path: str | Path, name: str | None = None, catalog: str | None = None,
                    cloud: str | None = None, features: list[str] | None = None) -> tuple[str, list[str]]:
    """(policy YAML text, warnings) for the Azure Firewall export at ``path``.

    Raises :class:`~proxy_addon.config.ConfigError` for a bad file and
    ``ValueError`` for an unknown catalog.
    """
    imported = load_firewall_json(path)
    return policy_yaml(imported, name or Path(path).stem, catalog, cloud, features)


__all__ = ["Imported", "import_firewall", "json_path", "load_firewall_json", "policy_yaml", "read_firewall_json"]
