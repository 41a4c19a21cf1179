"""pywinrm builds each target's session through requests' proxy lookup, which sets os.environ['no_proxy'] around
the lookup and restores it afterwards (psf/requests#4997): a fleet does that from many threads at once."""

from __future__ import annotations

import os
import threading

import requests.utils
import winrm.transport

import toolkit.targets.winrm  # noqa: F401  (installs the serialised lookup, as every run that uses WinRM does)


def test_two_session_builds_never_look_proxies_up_at_once(monkeypatch):
    """Target A's session build is held inside the lookup (os.environ['no_proxy'] set) while target B's starts.
    Unserialised, B enters too, A's exit deletes the variable B saw, B's exit puts it back: the process then
    bypasses every proxy for good (or, the other way round, fails with KeyError: 'no_proxy')."""
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    first_inside, release = threading.Event(), threading.Event()
    inside: list[str] = []
    overlapped: list[bool] = []

    def held_lookup(host: str) -> bool:
        overlapped.append(bool(inside))
        inside.append(host)
        if len(overlapped) == 1:
            first_inside.set()
            release.wait(10)
        inside.remove(host)
        return False

    monkeypatch.setattr(requests.utils, "proxy_bypass", held_lookup)
    failures: list[BaseException] = []

    def build(endpoint: str) -> None:
        transport = winrm.transport.Transport(endpoint, username="u", password="p", auth_method="basic",
                                              message_encryption="never", proxy=None)  # exkit's default: no proxy
        try:
            transport.build_session()  # no network: basic auth without message encryption
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            failures.append(exc)

    first = threading.Thread(target=build, args=("http://127.0.0.1:5985/wsman/a",))
    first.start()
    assert first_inside.wait(10)
    second = threading.Thread(target=build, args=("http://127.0.0.1:5985/wsman/b",))
    second.start()
    second.join(0.5)  # unserialised, B is through the lookup by now; serialised, it waits for A
    release.set()
    first.join(10)
    second.join(10)
    assert not failures, failures
    assert overlapped == [False, False]
    assert "no_proxy" not in os.environ
