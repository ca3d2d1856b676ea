import threading
import time

from proxy_addon.reload import PolicyFileWatch


def wait(event, timeout=5.0):
    return event.wait(timeout)


def test_watch_fires_on_write_and_on_rename(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n")
    fired = threading.Event()
    watch = PolicyFileWatch(path, fired.set)
    watch.start()
    try:
        time.sleep(0.2)
        path.write_text("version: 1\nname: x\n")
        assert wait(fired)
        fired.clear()
        tmp = tmp_path / "policy.yaml.tmp"
        tmp.write_text("version: 1\nname: y\n")
        tmp.replace(path)
        assert wait(fired)
        fired.clear()
        (tmp_path / "unrelated.txt").write_text("x")
        assert not fired.wait(0.6)
    finally:
        watch.stop()


def test_watch_survives_a_failing_callback(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\n")
    calls = []

    def callback():
        calls.append(1)
        raise RuntimeError("boom")

    watch = PolicyFileWatch(path, callback)
    watch.start()
    try:
        time.sleep(0.2)
        path.write_text("a")
        time.sleep(0.6)
        path.write_text("b")
        time.sleep(0.6)
        assert len(calls) >= 2
    finally:
        watch.stop()
