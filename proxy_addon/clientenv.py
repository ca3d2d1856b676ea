"""Client configuration for the proxy: the exact text each client needs.

Pure text generation (no I/O): :func:`normalise_proxy_url` checks the proxy
URL, :func:`render` returns the configuration of one client (``shell``,
``pip``, ``conda``, ``r``, ``az``, ``docker``, ``apt``, ``git``, ``npm``).

The proxy URL is always ``http://``, also for HTTPS traffic: clients send
``CONNECT host:443`` to the proxy in clear text and the TLS bytes pass
through. An ``https://`` proxy URL would make clients speak TLS *to the
proxy*, which it does not do. Setting names are those documented by each
client: pip ``proxy`` (pip user guide, "Configuration"), conda
``proxy_servers`` (conda ``.condarc`` reference), pixi/rattler
``[proxy-config]`` (pixi configuration reference), R ``http_proxy`` /
``https_proxy`` / ``no_proxy`` in ``Renviron`` (R ``?download.file``), Docker
daemon ``proxies`` in ``daemon.json`` and CLI ``proxies.default`` in
``~/.docker/config.json`` (Docker docs, "Configure the daemon to use a
proxy", "Use a proxy server with the Docker CLI"), apt
``Acquire::http::Proxy`` / ``Acquire::https::Proxy`` (``apt.conf(5)``), git
``http.proxy`` (``git-config(1)``), npm ``proxy`` / ``https-proxy`` /
``noproxy`` (npm ``config`` docs).
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from dataclasses import dataclass
from urllib.parse import urlsplit

from .hostnames import InvalidHost, normalise_host

CLIENTS = ("shell", "pip", "conda", "r", "az", "docker", "apt", "git", "npm")
"""Clients :func:`render` knows, in the order ``--for all`` prints them."""

DEFAULT_PROXY_URL = "http://127.0.0.1:3128"

DEFAULT_NO_PROXY = ("localhost", "127.0.0.1", "::1", "169.254.169.254")
"""Never through the proxy: loopback, and the Azure Instance Metadata Service
(link-local; managed identities on Azure ML compute get their tokens there)."""


class ClientEnvError(ValueError):
    """A proxy URL or no-proxy entry that clients cannot use; the message
    names the value and what to write instead."""


@dataclass(frozen=True)
class ProxySettings:
    """A checked proxy URL (``http://[user:pass@]host:port``, no trailing
    slash) and the no-proxy entries (names, ``.suffix`` domains, IPs, CIDRs)."""

    url: str
    host: str
    port: int
    no_proxy: tuple[str, ...] = DEFAULT_NO_PROXY

    @property
    def no_proxy_text(self) -> str:
        return ",".join(self.no_proxy)

    @property
    def loopback(self) -> bool:
        """Whether the proxy host is loopback (unreachable from inside a container)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def normalise_proxy_url(text: str) -> tuple[str, str, int]:
    """``(url, host, port)`` for a proxy URL; ``host:port`` gets ``http://``.

    Raises :class:`ClientEnvError` for another scheme (``https://`` would make
    clients speak TLS to the proxy; ``socks5://`` is another protocol), a
    missing or invalid port (clients disagree on the default: curl 1080,
    pip 80), a path, query or fragment, or an empty host.
    """
    raw = text.strip()
    if not raw:
        raise ClientEnvError("proxy URL is empty; write http://HOST:PORT, e.g. http://127.0.0.1:3128")
    if any(c.isspace() or not c.isprintable() for c in raw):
        raise ClientEnvError(f"proxy URL {text!r} contains blanks or control characters; write http://HOST:PORT")
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
    except ValueError as e:
        raise ClientEnvError(f"proxy URL {text!r} is not a URL ({e}); write http://HOST:PORT") from None
    scheme = parts.scheme.lower()
    if scheme == "https":
        raise ClientEnvError(
            f"proxy URL {text!r}: use http://, not https:// (the proxy speaks plain HTTP; clients still "
            f"reach HTTPS hosts through it with CONNECT, and an https:// proxy URL would make them "
            f"speak TLS to the proxy): write {'http://' + raw.split('://', 1)[1]!r}")
    if scheme != "http":
        raise ClientEnvError(f"proxy URL {text!r}: scheme {parts.scheme + '://'!r} is not supported; "
                             f"write http://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ClientEnvError(f"proxy URL {text!r}: a proxy URL has no path, query or fragment; "
                             f"write http://HOST:PORT")
    host = parts.hostname
    if not host:
        raise ClientEnvError(f"proxy URL {text!r} has no host; write http://HOST:PORT")
    try:
        normalise_host(host)
    except InvalidHost as e:
        raise ClientEnvError(f"proxy URL {text!r}: host {host!r} is not a host name or IP address ({e})") from None
    try:
        port = parts.port
    except ValueError:
        raise ClientEnvError(f"proxy URL {text!r}: the port is not a number in 1..65535") from None
    if port is None or port == 0:
        raise ClientEnvError(f"proxy URL {text!r} has no port; clients disagree on the default "
                             f"(curl 1080, pip 80): write e.g. http://{parts.netloc.rstrip(':')}:3128")
    return f"http://{parts.netloc}", host, port


def check_no_proxy(entry: str) -> str:
    """One no-proxy entry, stripped; raises :class:`ClientEnvError` for an
    empty one or one with a scheme, path, comma or blank."""
    value = entry.strip()
    if not value:
        raise ClientEnvError("no-proxy entry is empty")
    if "://" in value or any(c in ",\"'" or c.isspace() or not c.isprintable() for c in value):
        raise ClientEnvError(f"no-proxy entry {entry!r}: write a host name, .domain suffix, IP or CIDR "
                             f"(e.g. .privatelink.api.azureml.ms or 10.0.0.0/8), one per option")
    if "/" in value:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ClientEnvError(f"no-proxy entry {entry!r} is neither a host name nor a CIDR") from None
    return value


def settings(proxy_url: str = DEFAULT_PROXY_URL, extra_no_proxy: tuple[str, ...] | list[str] = ()) -> ProxySettings:
    """Checked settings: the proxy URL and the default no-proxy entries plus
    ``extra_no_proxy`` (private endpoints, internal mirrors), without duplicates.
    Raises :class:`ClientEnvError`."""
    url, host, port = normalise_proxy_url(proxy_url)
    entries = list(DEFAULT_NO_PROXY)
    for entry in extra_no_proxy:
        value = check_no_proxy(entry)
        if value not in entries:
            entries.append(value)
    return ProxySettings(url, host, port, tuple(entries))


# -- one renderer per client --------------------------------------------------

def _env_pairs(s: ProxySettings) -> list[tuple[str, str]]:
    """The proxy variables in both spellings: upper case first, then lower case."""
    values = {"HTTP_PROXY": s.url, "HTTPS_PROXY": s.url, "NO_PROXY": s.no_proxy_text}
    return list(values.items()) + [(name.lower(), value) for name, value in values.items()]


def _env_lines(s: ProxySettings) -> list[str]:
    return [f"export {name}={shlex.quote(value)}" for name, value in _env_pairs(s)]


def _shell(s: ProxySettings) -> str:
    return "\n".join([
        "# Environment for curl, wget, Python (requests, urllib, httpx), az, Go and most other clients.",
        "# Both spellings: some clients read only the lower-case ones (curl ignores HTTP_PROXY).",
        *_env_lines(s),
    ])


def _pip(s: ProxySettings) -> str:
    return "\n".join([
        "# pip.conf (~/.config/pip/pip.conf, /etc/pip.conf, or the file named by PIP_CONFIG_FILE)",
        "# (or per command: pip install --proxy URL PKG)",
        "[global]",
        f"proxy = {s.url}",
    ])


def _conda(s: ProxySettings) -> str:
    return "\n".join([
        "# .condarc (~/.condarc or $CONDA_PREFIX/.condarc); mamba and conda-libmamba read it too.",
        "proxy_servers:",
        f"  http: {json.dumps(s.url)}",
        f"  https: {json.dumps(s.url)}",
        "",
        "# pixi and other rattler-based tools: ~/.pixi/config.toml",
        "[proxy-config]",
        f"http = {json.dumps(s.url)}",
        f"https = {json.dumps(s.url)}",
        f"non-proxy-hosts = {json.dumps(list(s.no_proxy))}",
    ])


def _r(s: ProxySettings) -> str:
    return "\n".join([
        "# Renviron (~/.Renviron, or the file named by R_ENVIRON_USER): install.packages() and",
        "# download.file() use libcurl, which reads these variables.",
        # lower case first: the spelling libcurl documents
        *(f"{name}={value}" for name, value in _env_pairs(s)[3:] + _env_pairs(s)[:3]),
    ])


def _az(s: ProxySettings) -> str:
    return "\n".join([
        "# Azure CLI (and the azure-ai-ml / azureml Python SDKs) use requests, which reads these.",
        "# Login and ARM go through the proxy too: login.microsoftonline.com, management.azure.com.",
        *_env_lines(s)[:3],
    ])


def _docker(s: ProxySettings) -> str:
    daemon = {"proxies": {"http-proxy": s.url, "https-proxy": s.url, "no-proxy": s.no_proxy_text}}
    cli = {"proxies": {"default": {"httpProxy": s.url, "httpsProxy": s.url, "noProxy": s.no_proxy_text}}}
    lines = [
        "# Docker daemon (image pulls from mcr.microsoft.com, *.azurecr.io): /etc/docker/daemon.json,",
        "# then restart the daemon (Docker Engine 23.0 or later).",
        *json.dumps(daemon, indent=2).splitlines(),
        "",
        "# docker build and docker run (passed to RUN steps and containers as HTTP_PROXY etc.):",
        "# ~/.docker/config.json",
        *json.dumps(cli, indent=2).splitlines(),
        "",
        "# or per build: docker build " + " ".join(
            f"--build-arg {k}={shlex.quote(v)}" for k, v in
            (("HTTP_PROXY", s.url), ("HTTPS_PROXY", s.url), ("NO_PROXY", s.no_proxy_text))) + " .",
    ]
    if s.loopback:
        lines += [
            "",
            f"# Note: {s.host} inside a container is the container itself. For builds and containers,",
            "# run the proxy on an address they reach (e.g. the docker0 bridge address) and use",
            "# that host in config.json, or build with --network host.",
        ]
    return "\n".join(lines)


def _apt(s: ProxySettings) -> str:
    return "\n".join([
        "# /etc/apt/apt.conf.d/95azml-egress-proxy",
        f'Acquire::http::Proxy "{s.url}";',
        f'Acquire::https::Proxy "{s.url}";',
    ])


def _git(s: ProxySettings) -> str:
    return "\n".join([
        "# git (http.proxy covers http:// and https:// remotes; git reads no_proxy from the environment)",
        f"git config --global http.proxy {shlex.quote(s.url)}",
    ])


def _npm(s: ProxySettings) -> str:
    return "\n".join([
        "# .npmrc (~/.npmrc or the project's .npmrc)",
        f"proxy={s.url}",
        f"https-proxy={s.url}",
        f"noproxy={s.no_proxy_text}",
    ])


_RENDERERS = {
    "shell": _shell, "pip": _pip, "conda": _conda, "r": _r, "az": _az,
    "docker": _docker, "apt": _apt, "git": _git, "npm": _npm,
}


def render(client: str, s: ProxySettings) -> str:
    """The configuration text for ``client`` (one of :data:`CLIENTS`), ending
    without a newline. Raises :class:`ClientEnvError` for an unknown client."""
    try:
        renderer = _RENDERERS[client]
    except KeyError:
        raise ClientEnvError(f"unknown client {client!r}; choose one of {', '.join(CLIENTS)}") from None
    return renderer(s)
