"""Pure tests of the client configuration text (proxy_addon.clientenv)."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import tomllib

import pytest
import yaml

from proxy_addon.clientenv import (
    CLIENTS, DEFAULT_NO_PROXY, ClientEnvError, check_no_proxy, normalise_proxy_url, render, settings,
)


@pytest.mark.parametrize("text, expected", [
    ("http://127.0.0.1:3128", ("http://127.0.0.1:3128", "127.0.0.1", 3128)),
    ("http://127.0.0.1:3128/", ("http://127.0.0.1:3128", "127.0.0.1", 3128)),
    ("127.0.0.1:3128", ("http://127.0.0.1:3128", "127.0.0.1", 3128)),
    ("HTTP://Proxy.Corp.Example:8080", ("http://Proxy.Corp.Example:8080", "proxy.corp.example", 8080)),
    ("http://[::1]:3128", ("http://[::1]:3128", "::1", 3128)),
    ("http://team:s%40cret@egress.internal:3128", ("http://team:s%40cret@egress.internal:3128", "egress.internal", 3128)),
    ("  http://10.0.0.4:3128  ", ("http://10.0.0.4:3128", "10.0.0.4", 3128)),
], ids=["plain", "trailing-slash", "no-scheme", "upper-scheme", "ipv6", "userinfo", "blanks"])
def test_normalise_proxy_url(text, expected):
    assert normalise_proxy_url(text) == expected


@pytest.mark.parametrize("text, message", [
    ("https://127.0.0.1:3128", "use http://, not https://"),
    ("https://127.0.0.1:3128", "write 'http://127.0.0.1:3128'"),
    ("socks5://127.0.0.1:1080", "scheme 'socks5://' is not supported"),
    ("http://127.0.0.1", "has no port"),
    ("127.0.0.1", "write e.g. http://127.0.0.1:3128"),
    ("http://127.0.0.1:99999", "not a number in 1..65535"),
    ("http://127.0.0.1:3128/proxy", "no path, query or fragment"),
    ("http://127.0.0.1:3128?x=1", "no path, query or fragment"),
    ("http://:3128", "has no host"),
    ("", "proxy URL is empty"),
    ("http://[::1", "is not a URL (Invalid IPv6 URL)"),
    ("http://a b:3128", "contains blanks or control characters"),
    ("http://a\n:3128", "contains blanks or control characters"),
    ("http://a_b!:3128", "host 'a_b!' is not a host name or IP address"),
], ids=["https", "https-suggests", "socks", "no-port", "bare-host", "bad-port", "path", "query", "no-host", "empty",
        "bad-ipv6", "blank", "newline", "bad-host"])
def test_bad_proxy_urls_say_what_to_write(text, message):
    with pytest.raises(ClientEnvError, match=re.escape(message)):
        normalise_proxy_url(text)


@pytest.mark.parametrize("entry, ok", [
    (".privatelink.api.azureml.ms", True),
    ("contoso.api.azureml.ms", True),
    ("10.0.0.0/8", True),
    ("fd00::/8", True),
    ("10.0.0.0/33", False),
    ("http://x", False),
    ("a,b", False),
    ("a b", False),
    ("a\x00b", False),
    ("", False),
], ids=["suffix", "name", "cidr4", "cidr6", "bad-cidr", "url", "comma", "blank", "control", "empty"])
def test_no_proxy_entries(entry, ok):
    if ok:
        assert check_no_proxy(entry) == entry
    else:
        with pytest.raises(ClientEnvError):
            check_no_proxy(entry)


def test_settings_keep_defaults_first_and_drop_duplicates():
    s = settings("egress.internal:3128", ["10.0.0.0/8", "127.0.0.1", "10.0.0.0/8"])
    assert s.url == "http://egress.internal:3128"
    assert s.no_proxy == DEFAULT_NO_PROXY + ("10.0.0.0/8",)
    assert s.no_proxy_text == "localhost,127.0.0.1,::1,169.254.169.254,10.0.0.0/8"
    assert not s.loopback and settings().loopback


URL = "http://10.1.2.3:3128"


def _render(client):
    return render(client, settings(URL, [".privatelink.api.azureml.ms"]))


def test_shell_exports_both_spellings():
    text = _render("shell")
    env = {}
    for line in text.splitlines():
        if line.startswith("export "):
            key, value = line[len("export "):].split("=", 1)
            env[key] = shlex.split(value)[0]
    no_proxy = "localhost,127.0.0.1,::1,169.254.169.254,.privatelink.api.azureml.ms"
    assert env == {"HTTP_PROXY": URL, "HTTPS_PROXY": URL, "NO_PROXY": no_proxy,
                   "http_proxy": URL, "https_proxy": URL, "no_proxy": no_proxy}


def test_pip_conf_parses():
    parser = configparser.ConfigParser()
    parser.read_string(_render("pip"))
    assert dict(parser["global"]) == {"proxy": URL}


def test_condarc_and_pixi_config_parse():
    condarc, pixi = _render("conda").split("\n\n")
    assert yaml.safe_load(condarc) == {"proxy_servers": {"http": URL, "https": URL}}
    assert tomllib.loads(pixi)["proxy-config"] == {
        "http": URL, "https": URL,
        "non-proxy-hosts": ["localhost", "127.0.0.1", "::1", "169.254.169.254", ".privatelink.api.azureml.ms"]}


def test_renviron_lines():
    values = dict(line.split("=", 1) for line in _render("r").splitlines() if not line.startswith("#"))
    assert values["https_proxy"] == values["http_proxy"] == values["HTTPS_PROXY"] == URL
    assert values["no_proxy"].endswith(",.privatelink.api.azureml.ms")


def test_docker_daemon_and_cli_json():
    text = _render("docker")
    blocks = [b for b in text.split("\n\n") if b.lstrip().startswith(("#", "{"))]
    daemon = json.loads("\n".join(x for x in blocks[0].splitlines() if not x.startswith("#")))
    cli = json.loads("\n".join(x for x in blocks[1].splitlines() if not x.startswith("#")))
    assert daemon["proxies"]["https-proxy"] == URL and daemon["proxies"]["http-proxy"] == URL
    assert cli["proxies"]["default"]["httpsProxy"] == URL
    assert "--build-arg HTTPS_PROXY=http://10.1.2.3:3128" in text
    assert "inside a container is the container itself" not in text  # not a loopback proxy
    assert "inside a container is the container itself" in render("docker", settings())


@pytest.mark.parametrize("client, lines", [
    ("apt", ['Acquire::http::Proxy "http://10.1.2.3:3128";', 'Acquire::https::Proxy "http://10.1.2.3:3128";']),
    ("git", ["git config --global http.proxy http://10.1.2.3:3128"]),
    ("npm", ["proxy=http://10.1.2.3:3128", "https-proxy=http://10.1.2.3:3128",
             "noproxy=localhost,127.0.0.1,::1,169.254.169.254,.privatelink.api.azureml.ms"]),
    ("az", ["export HTTPS_PROXY=http://10.1.2.3:3128", "export HTTP_PROXY=http://10.1.2.3:3128"]),
], ids=["apt", "git", "npm", "az"])
def test_client_lines(client, lines):
    text = _render(client)
    for line in lines:
        assert line in text.splitlines()


@pytest.mark.parametrize("client", CLIENTS)
def test_every_client_uses_an_http_proxy_url_only(client):
    text = _render(client)
    assert URL in text
    assert "https://10.1.2.3" not in text
    assert not text.endswith("\n")


def test_unknown_client():
    with pytest.raises(ClientEnvError, match="unknown client 'yum'; choose one of shell, pip"):
        render("yum", settings())
