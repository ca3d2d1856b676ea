"""The lean runtime: which addons it loads, in which order."""

import asyncio
import resource

from mitmproxy import options

from proxy_addon.policy_loader import load_policy
from proxy_addon.runtime import EgressMaster, raise_open_file_limit


def test_lean_master_loads_only_what_it_needs_in_order():
    async def build():
        master = EgressMaster(options.Options(), load_policy())
        return [type(a).__name__ for a in master.addons.chain]

    names = asyncio.run(build())
    assert len(names) < 16
    assert names.index("EgressPolicy") < names.index("NextLayer")  # tunnels are checked first
    assert names.index("ConnectionGuard") < names.index("EgressPolicy")
    assert names.index("ProxyAuth") < names.index("EgressPolicy")  # 407 before deciding
    assert "ScriptLoader" in names and "Dumper" not in names


def test_open_file_limit_is_raised():
    raise_open_file_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert soft == hard or hard == resource.RLIM_INFINITY
