"""Hook dispatch for the lean master: each event goes only to the addons that handle it.

mitmproxy's :class:`~mitmproxy.addonmanager.AddonManager` walks every addon
(and its sub-addons) for every event, calling each inside a context manager;
with a dozen addons and 10 events per tunnel that walk costs more than the
handlers. :class:`HookDispatch` keeps the same behaviour with a table from hook
name to handlers.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Any, Callable

from mitmproxy import addonmanager, exceptions, flow, hooks, master

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
