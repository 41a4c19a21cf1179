"""One inventory entry → its connector."""

from __future__ import annotations

from pathlib import Path

from toolkit.targets.base import Target
from toolkit.targets.specs import ExchangeOnlineTargetSpec, ExchangeServerTargetSpec, SandboxTargetSpec


def build_target(spec: SandboxTargetSpec | ExchangeServerTargetSpec | ExchangeOnlineTargetSpec, name: str,
                 base: Path) -> Target:
    """The connector for one inventory entry; relative paths in the spec are relative to ``base``."""
    if isinstance(spec, ExchangeOnlineTargetSpec):
        from toolkit.targets.exchange_online import ExchangeOnlineTarget

        return ExchangeOnlineTarget(spec, name, base)
    if isinstance(spec, ExchangeServerTargetSpec):
        from toolkit.targets.winrm import WinRMTarget

        return WinRMTarget(spec, name, base)
    from toolkit.targets.sandbox import SandboxTarget

    state = None
    if spec.state:
        state = Path(spec.state)
        if not state.is_absolute():
            state = base / state
    return SandboxTarget(state, name=name, platform=spec.platform)
