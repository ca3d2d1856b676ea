"""Exporters: a loaded policy as real firewall rules (one module per format).

:func:`export` renders a :class:`~proxy_addon.policy.Policy` in one of
:data:`FORMATS`; every module is pure (no mitmproxy import) and renders the
format-neutral :class:`~proxy_addon.exporters.model.ExportModel`.
"""

from __future__ import annotations

from ..policy import Policy
from . import arm, azcli, bicep, managed_network, squid, terraform, text
from .model import COLLECT_BY, ExportModel, build_model

FORMATS = ("arm", "bicep", "terraform", "az-cli", "aml-managed-network", "squid", "text")

_RENDERERS = {
    "arm": arm.render,
    "bicep": bicep.render,
    "terraform": terraform.render,
    "aml-managed-network": managed_network.render,
    "squid": squid.render,
    "text": text.render,
}


def export(policy: Policy, fmt: str, collect_by: str = "feature", classic: bool = False) -> str:
    """``policy`` as text in format ``fmt`` (one of :data:`FORMATS`); ``classic``
    applies to ``az-cli`` only. Raises ``ValueError`` for an unknown format,
    ``collect_by`` or a ``classic`` flag on another format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    if classic and fmt != "az-cli":
        raise ValueError("--classic applies to --format az-cli only")
    model = build_model(policy, collect_by)
    if fmt == "az-cli":
        return azcli.render(model, classic=classic)
    return _RENDERERS[fmt](model)


__all__ = ["COLLECT_BY", "FORMATS", "ExportModel", "build_model", "export"]
