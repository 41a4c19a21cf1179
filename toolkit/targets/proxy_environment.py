"""requests' proxy lookup made safe for a fleet's threads.

``requests.utils.should_bypass_proxies`` sets ``os.environ['no_proxy']`` while it looks a URL up and deletes it
afterwards (``requests.utils.set_environ``; psf/requests issue #4997, open). pywinrm asks it with ``no_proxy='*'``
whenever it builds a session for a target without a proxy, so two fleet threads doing that at once race: one
deletes the variable the other set (the other fails with ``KeyError: 'no_proxy'``), or the variable stays set for
the rest of the process. :func:`install` serialises those lookups: each one's set-look-restore runs alone, so every
lookup, and every thread that looks proxies up through requests, sees the environment it should.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import requests.utils

_LOCK = threading.RLock()
_original: Callable[[str, str | None], AbstractContextManager[None]] | None = None


@contextmanager
def _serialised_set_environ(env_name: str, value: str | None) -> Iterator[None]:
    assert _original is not None
    with _LOCK, _original(env_name, value):
        yield


def install() -> None:
    """Replace requests' set_environ with the serialised one (once per process; later calls do nothing)."""
    global _original
    with _LOCK:
        if _original is None:
            _original = requests.utils.set_environ
            requests.utils.set_environ = _serialised_set_environ
