"""The lean mitmproxy master behind ``azml-egress run``.

It loads only the addons this product needs (12 instead of the 36 that mitmdump
loads): logging to stderr, core, proxy authentication, client blocking,
the proxy server, layer selection, TLS configuration, the egress policy addon,
the h2c-upgrade guard for plain HTTP, user scripts (``-s``) and the start-up
error check. Decision lines go to stdout.

Per connection it does less than mitmdump (README "Performance"):

* :class:`HookDispatch` calls, for each event, only the addons that implement
  it, instead of walking every addon inside a context manager per event;
* mitmproxy's per-connection log lines (client/server connect and disconnect,
  four lines to stderr per tunnel, all said better by the decision log) are
  only written with ``--set termlog_verbosity=debug``;
* objects alive after start-up are frozen out of the garbage collector's scans
  (:func:`freeze_startup_objects`);
* the decision log is written by a background thread
  (:class:`proxy_addon.audit.DecisionLog`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import inspect
import logging
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

from mitmproxy import addonmanager, ctx, exceptions, flow, hooks, master, options
from mitmproxy.addons import (block, core, disable_h2c, errorcheck, next_layer, proxyauth, proxyserver, script,
                              termlog, tlsconfig)

from .addon import EgressPolicy
from .policy import Policy

logger = logging.getLogger(__name__)


@dataclass
class RunSettings:
    """Everything ``azml-egress run`` needs besides the policy."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 3128
    decision_log: str = ""
    log_stdout: bool = True
    scripts: list[str] = field(default_factory=list)
    set_options: list[str] = field(default_factory=list)
    """Extra mitmproxy options as ``name=value``."""
    resolve: list[str] = field(default_factory=list)
    """Static name resolution entries ``NAME=ADDRESS``."""
    mode: str = ""
    """Mode override (kept across policy reloads); empty: the policy's."""


_ARG_NAMES: dict[type, tuple[str, ...]] = {}


def _hook_args(event: hooks.Hook) -> list[Any]:
    """``event.args()`` without calling ``dataclasses.fields`` every time."""
    names = _ARG_NAMES.get(type(event))
    if names is None:
        names = _ARG_NAMES[type(event)] = tuple(f.name for f in dataclasses.fields(event))  # type: ignore[arg-type]
    return [getattr(event, name) for name in names]


class HookDispatch(addonmanager.AddonManager):
    """mitmproxy's addon manager with a table from hook name to the addons implementing it.

    mitmproxy walks every addon (and its sub-addons) for every event, each
    inside a context manager; a tunnel fires 10 events, so the walk
    costs more than the handlers. Here each hook name maps to the bound
    handlers of the addons that have it, in chain order, built on first use and
    dropped whenever the chain changes (``add``, ``register``, ``remove``,
    ``clear``). Addons that manage sub-addons (an ``addons`` attribute: the
    script loader and its scripts) are still walked at dispatch time, so ``-s``
    scripts, their reloads and their own ``addons`` lists behave as in
    mitmdump. Errors behave as in mitmproxy: an exception is logged as
    ``Addon error`` with its traceback and the next handler runs;
    ``AddonHalt`` stops the chain; ``OptionsError`` propagates.
    """

    def __init__(self, master_: master.Master) -> None:
        super().__init__(master_)
        self._table: dict[str, list[tuple[Any, Callable | None, bool]]] = {}

    # -- keeping the table right ------------------------------------------------

    def register(self, addon):
        self._table.clear()
        try:
            return super().register(addon)
        finally:
            self._table.clear()

    def add(self, *addons) -> None:
        try:
            super().add(*addons)
        finally:
            self._table.clear()

    def remove(self, addon) -> None:
        try:
            super().remove(addon)
        finally:
            self._table.clear()

    def clear(self) -> None:
        super().clear()
        self._table.clear()

    def handlers(self, name: str) -> list[tuple[Any, Callable | None, bool]]:
        """``(addon, bound handler or None, walk)`` for hook ``name`` in chain
        order; ``walk`` marks an addon with sub-addons, walked at dispatch time."""
        entries = self._table.get(name)
        if entries is None:
            entries = []
            for addon in self.chain:
                func = getattr(addon, name, None)
                func = func if callable(func) else None
                walk = hasattr(addon, "addons")
                if func is not None or walk:
                    entries.append((addon, func, walk))
            self._table[name] = entries
        return entries

    def has_handlers(self, name: str) -> bool:
        """Whether any addon (or loaded script) handles hook ``name`` now."""
        return any(func is not None or (walk and addon.addons) for addon, func, walk in self.handlers(name))

    # -- dispatch -------------------------------------------------------------------

    @staticmethod
    def _failed(error: Exception) -> None:
        logging.getLogger(addonmanager.__name__).error(
            f"Addon error: {error}", exc_info=(type(error), error, error.__traceback__))

    async def trigger_event(self, event: hooks.Hook) -> None:
        entries = self.handlers(event.name)
        if not entries:
            return
        args = _hook_args(event)
        for addon, func, walk in entries:
            try:
                if walk and addon.addons:
                    await self.invoke_addon(addon, event)
                elif func is not None:
                    result = func(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception as e:  # noqa: BLE001 - as mitmproxy's safecall: log and go on
                self._failed(e)

    def trigger(self, event: hooks.Hook) -> None:
        entries = self.handlers(event.name)
        if not entries:
            return
        args = _hook_args(event)
        for addon, func, walk in entries:
            try:
                if (walk and addon.addons) or (func is not None and inspect.iscoroutinefunction(func)):
                    self.invoke_addon_sync(addon, event)  # walks sub-addons; refuses async handlers
                elif func is not None:
                    func(*args)
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception as e:  # noqa: BLE001 - as mitmproxy's safecall: log and go on
                self._failed(e)

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        await self.trigger_event(event)
        args = _hook_args(event)
        if args and isinstance(args[0], flow.Flow) and self.has_handlers("update"):
            await self.trigger_event(hooks.UpdateHook([args[0]]))


CONNECTION_LOGGER = "mitmproxy.proxy.server"
"""mitmproxy's logger of per-connection lines (client/server connect and disconnect)."""


class ConnectionLogLevel:
    """Per-connection log lines only at ``termlog_verbosity=debug``: the
    decision log already has one line per decision, and writing four more
    lines per tunnel to stderr costs more CPU than deciding."""

    def load(self, loader) -> None:
        logging.getLogger(CONNECTION_LOGGER).setLevel(logging.WARNING)

    def configure(self, updated) -> None:
        if "termlog_verbosity" in updated:
            debug = ctx.options.termlog_verbosity == "debug"
            logging.getLogger(CONNECTION_LOGGER).setLevel(logging.NOTSET if debug else logging.WARNING)


class EgressMaster(master.Master):
    """A mitmproxy master with only the addons azml-egress needs, and a
    cheaper hook dispatch (:class:`HookDispatch`)."""

    def __init__(self, opts: options.Options, policy: Policy) -> None:
        super().__init__(opts, with_termlog=False)
        plain, self.addons = self.addons, HookDispatch(self)
        opts.changed.disconnect(plain._configure_all)
        self.egress = EgressPolicy(policy)
        self.addons.add(
            termlog.TermLog(out=sys.stderr),
            ConnectionLogLevel(),
            core.Core(),
            proxyauth.ProxyAuth(),
            block.Block(),
            proxyserver.Proxyserver(),
            next_layer.NextLayer(),
            tlsconfig.TlsConfig(),
            disable_h2c.DisableH2C(),
            self.egress,
            script.ScriptLoader(),
            errorcheck.ErrorCheck(),
        )


def freeze_startup_objects() -> None:
    """Hide every object alive after start-up (modules, catalogs, the policy
    and its index) from the cyclic garbage collector (``gc.freeze``): the
    collections that per-connection garbage triggers then stop re-scanning
    them (about 7% less CPU per tunnel in the benchmark). Objects that become
    garbage later, such as a replaced policy, are still freed by reference
    counting."""
    gc.collect()
    gc.freeze()


def run(policy: Policy, settings: RunSettings) -> int:
    """Run the proxy until SIGINT/SIGTERM; returns the process exit code."""

    async def main() -> int:
        logging.getLogger().setLevel(logging.INFO)
        for noisy in ("tornado", "asyncio", "hpack", "quic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        opts = options.Options()
        proxy = EgressMaster(opts, policy)
        try:
            opts.update(
                listen_host=settings.listen_host,
                listen_port=settings.listen_port,
                azml_decision_log=settings.decision_log,
                azml_log_stdout=settings.log_stdout,
                azml_mode=settings.mode,
                azml_resolve=settings.resolve,
                connection_strategy="lazy",
            )
            if settings.set_options:
                opts.set(*settings.set_options)
            if settings.scripts:
                opts.update(scripts=settings.scripts)
        except exceptions.OptionsError as e:
            print(f"azml-egress run: {e}", file=sys.stderr)
            return 2
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, proxy.shutdown)
        if hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        freeze_startup_objects()
        await proxy.run()
        errors = proxy.addons.get("errorcheck")
        return 1 if errors and getattr(errors, "has_errored", False) else 0

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0
