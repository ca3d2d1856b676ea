"""``azml-egress env``: the command line around proxy_addon.clientenv."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_addon.cli import main
from proxy_addon.clientenv import CLIENTS


def run(capsys, *argv):
    code = main(["env", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_default_is_shell_on_the_default_proxy(capsys):
    code, out, err = run(capsys)
    assert code == 0 and err == ""
    assert "export HTTPS_PROXY=http://127.0.0.1:3128\n" in out
    assert "export no_proxy=localhost,127.0.0.1,::1,169.254.169.254\n" in out


def test_for_pip_with_url_and_no_proxy(capsys):
    code, out, _ = run(capsys, "--for", "pip", "--proxy-url", "egress.internal:3128")
    assert code == 0
    assert out.splitlines()[-2:] == ["[global]", "proxy = http://egress.internal:3128"]


def test_all_prints_every_client_under_a_heading(capsys):
    code, out, _ = run(capsys, "--for", "all", "--no-proxy", "10.0.0.0/8")
    assert code == 0
    assert [line[3:] for line in out.splitlines() if line.startswith("## ")] == list(CLIENTS)
    assert "noproxy=localhost,127.0.0.1,::1,169.254.169.254,10.0.0.0/8" in out


@pytest.mark.parametrize("argv, message", [
    (["--proxy-url", "https://127.0.0.1:3128"], "azml-egress env: proxy URL 'https://127.0.0.1:3128': use http://"),
    (["--proxy-url", "proxy"], "azml-egress env: proxy URL 'proxy' has no port"),
    (["--no-proxy", "http://x"], "azml-egress env: no-proxy entry 'http://x'"),
], ids=["https", "no-port", "bad-no-proxy"])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1


def test_unknown_client_is_a_usage_error(capsys):
    assert main(["env", "--for", "yum"]) == 2
    assert "invalid choice: 'yum'" in capsys.readouterr().err


def test_readme_shows_the_current_output(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for argv in (["--for", "pip"], []):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        assert f"$ azml-egress env {' '.join(argv)}".rstrip() + "\n" + out in readme, argv
