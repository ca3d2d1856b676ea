"""Build deploy/container/Containerfile with podman and smoke-test the image.

Opt-in (``-m network``): the build installs the package's dependencies from
the package index. The base image must already be in local storage
(``AZML_CONTAINER_BASE``, default ``python:3.12-slim-bookworm``).

The build uses ``--isolation chroot`` (no OCI runtime needed). The smoke
test runs the image's own command (``Entrypoint`` + ``Cmd``) as the image's
user in its mounted filesystem, read-only, with only the log and state
directories writable and the policy and credentials mounted read-only
(``unshare --mount`` + ``chroot``): what ``podman run --read-only`` does,
without a container runtime, which some hosts cannot start.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from support.deploy import DEPLOY, PENDING_RUN_FLAGS, ROOT, check_run_argv
from support.proxy import free_port, wait_listening

pytestmark = [
    pytest.mark.network,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
    pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0,
                       reason="mounting the image and chroot need root on Linux"),
]

BASE = os.environ.get("AZML_CONTAINER_BASE", "python:3.12-slim-bookworm")
TAG = "localhost/azml-egress:smoke-test"


def podman(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image():
    if podman("image", "exists", BASE).returncode != 0:
        pytest.skip(f"base image {BASE} is not in local storage (pull it, or set AZML_CONTAINER_BASE)")
    build = ["build", "--format", "docker", "--isolation", "chroot", "--network", "host",
             "--build-arg", f"PYTHON_IMAGE={BASE}", "-f", str(DEPLOY / "container" / "Containerfile"), "-t", TAG]
    if os.path.isdir("/etc/ssl/certs"):
        build += ["-v", "/etc/ssl/certs:/etc/ssl/certs:ro"]  # this host's trust store for the package index
    done = podman(*build, str(ROOT), timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield TAG
    podman("rmi", "-f", TAG)


def test_image_config(image):
    (config,) = json.loads(podman("image", "inspect", image).stdout)
    c = config["Config"]
    assert c["User"] == "10001:10001"
    assert c["Entrypoint"] == ["azml-egress"]
    assert set(c["ExposedPorts"]) == {"3128/tcp", "9464/tcp"}
    assert set(c["Volumes"]) == {"/var/log/azml-egress", "/var/lib/azml-egress"}
    assert "http://127.0.0.1:9464/healthz" in " ".join(config["Healthcheck"]["Test"])
    env = dict(e.split("=", 1) for e in c["Env"])
    assert env["HOME"] == "/var/lib/azml-egress" and env["PATH"].startswith("/opt/azml-egress/bin:")


POLICY = """\
version: 1
name: smoke-test
mode: enforce
catalog: azureml
features: [required]
options:
  private_ranges_allowed: [127.0.0.0/8]
rule_collections:
  - name: local-index
    priority: 100
    action: allow
    rules:
      - name: pypi
        target_fqdns: [pypi.org]
        protocols: [https:{port}]
        feature: pip-index
"""


def test_image_runs_read_only_as_its_user(image, tmp_path, pki, upstream):
    (config,) = json.loads(podman("image", "inspect", image).stdout)
    argv = config["Config"]["Cmd"]
    pending = check_run_argv(argv)
    # drop the flags this checkout lacks, and listen on free ports
    port = free_port()
    run_args, skip_next = [], False
    for i, arg in enumerate(argv):
        if skip_next:
            skip_next = False
            continue
        if arg in PENDING_RUN_FLAGS:
            skip_next = True
            continue
        if argv[i - 1] == "--listen-port":
            arg = str(port)
        run_args.append(arg)
    run_args += ["--set", "azml_resolve=pypi.org=127.0.0.1"]

    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "policy.yaml").write_text(POLICY.format(port=upstream.https_port))
    from passlib.apache import HtpasswdFile
    htpasswd = HtpasswdFile(str(etc / "htpasswd"), new=True)
    htpasswd.set_password("team", "s3cret")
    htpasswd.save()
    os.chmod(etc, 0o755)
    for f in etc.iterdir():
        f.chmod(0o644)

    mounted = podman("image", "mount", image)
    assert mounted.returncode == 0, mounted.stderr
    root = mounted.stdout.strip()
    env = " ".join(shlex.quote(e) for e in config["Config"]["Env"])
    script = f"""
        set -e
        mount --bind {root} {root} && mount -o remount,bind,ro {root} {root}
        mount --rbind /dev {root}/dev && mount -t proc proc {root}/proc
        mount --bind -o ro {etc} {root}/etc/azml-egress
        for d in /var/log/azml-egress /var/lib/azml-egress; do
            mount -t tmpfs -o mode=0750,uid=10001,gid=10001 tmpfs {root}$d
        done
        exec chroot --userspec=10001:10001 {root} /usr/bin/env -i {env} \
            sh -c 'cd "$HOME" && exec "$0" "$@"' {' '.join(shlex.quote(a) for a in config['Config']['Entrypoint'] + run_args)}
    """
    err = tmp_path / "proxy.err"
    with open(err, "w") as err_file:
        proxy = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                 stdout=subprocess.PIPE, stderr=err_file, text=True)
    try:
        wait_listening(port, proxy, err, timeout=30)
        curl = ["curl", "-sS", "--max-time", "10", "-x", f"http://127.0.0.1:{port}", "-D", "-",
                "--cacert", str(pki.ca_pem)]
        no_auth = subprocess.run(curl + ["https://pypi.org/simple/"], capture_output=True, text=True, timeout=20)
        assert "407" in no_auth.stdout
        ok = subprocess.run(curl + ["--proxy-user", "team:s3cret", f"https://pypi.org:{upstream.https_port}/simple/"],
                            capture_output=True, text=True, timeout=20)
        assert ok.returncode == 0 and "azmltestpkg" in ok.stdout, ok.stderr + err.read_text()
        denied = subprocess.run(curl + ["--proxy-user", "team:s3cret", "https://evil.example/"],
                                capture_output=True, text=True, timeout=20)
        assert "X-Azml-Egress-Reason: no_rule_matched" in denied.stdout
        # the decision log in the (writable) log directory is written by the image's user
        stat = subprocess.run(["nsenter", "-t", str(proxy.pid), "-m", "stat", "-c", "%u %n",
                               f"{root}/var/log/azml-egress/decisions.jsonl"], capture_output=True, text=True)
        assert stat.stdout.startswith("10001 "), stat.stderr
        if not pending:
            # the image's own HEALTHCHECK command, as the image's user, inside the image
            test = config["Healthcheck"]["Test"]
            assert test[0] == "CMD"
            health = subprocess.run(["nsenter", "-t", str(proxy.pid), "-m", "chroot", "--userspec=10001:10001", root,
                                     "/usr/bin/env", "-i", *config["Config"]["Env"], *test[1:]],
                                    capture_output=True, text=True, timeout=30)
            assert health.returncode == 0, health.stderr
        write = subprocess.run(["nsenter", "-t", str(proxy.pid), "-m", "chroot", "--userspec=10001:10001", root,
                                "touch", "/opt/azml-egress/x"], capture_output=True, text=True)
        assert write.returncode != 0 and "Read-only file system" in write.stderr
    finally:
        proxy.terminate()
        try:
            proxy.wait(10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
        proxy.stdout.close()
        podman("image", "unmount", image)
    if pending:
        pytest.skip(f"image smoke-tested without {', '.join(sorted(pending))}, which this checkout's CLI lacks")
