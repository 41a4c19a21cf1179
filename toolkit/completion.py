"""Shell completion (`exkit --install-completion`): target and group names read from the inventory given with -i.

Completion runs while the user types: it reads the inventory's names only (no validation, no connector), and a
missing, unreadable or half-written inventory completes nothing instead of printing an error into the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def inventory_names(path: Path) -> tuple[list[str], list[str]]:
    """(target names, group names) of an inventory file; empty when it cannot be read or parsed."""
    from toolkit.playbook.diagnostics import Diagnostics
    from toolkit.playbook.load import parse_yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return [], []
    document = parse_yaml(text, str(path), Diagnostics())
    data = document.data if document is not None else None
    if not isinstance(data, dict):
        return [], []
    targets = list(data.get("targets") or {}) if isinstance(data.get("targets"), dict) else []
    groups = data.get("groups") if isinstance(data.get("groups"), dict) else {}
    for group in groups.values():
        if isinstance(group, dict) and isinstance(group.get("targets"), dict):
            targets.extend(group["targets"])
    return sorted(set(targets)), sorted(groups)


def _inventory(ctx: Any) -> Path | None:
    value = ctx.params.get("inventory")
    return Path(value) if value else None


def complete_targets(ctx: Any, incomplete: str) -> list[str]:
    """--target: the inventory's target names starting with what was typed."""
    inventory = _inventory(ctx)
    if inventory is None:
        return ["sandbox"] if "sandbox".startswith(incomplete) else []
    return [name for name in inventory_names(inventory)[0] if name.startswith(incomplete)]


def complete_limit(ctx: Any, incomplete: str) -> list[str]:
    """--limit: target and group names (comma-separated patterns: completes the last one)."""
    inventory = _inventory(ctx)
    if inventory is None:
        return []
    head, comma, last = incomplete.rpartition(",")
    prefix = head + comma
    targets, groups = inventory_names(inventory)
    return [prefix + name for name in sorted(set(targets) | set(groups)) if name.startswith(last)]


def complete_yaml(incomplete: str) -> list[str]:
    """Playbook and inventory paths: YAML files and folders under what was typed (typer's shell scripts complete
    only the values exkit returns, not files)."""
    folder, _, stem = incomplete.rpartition("/")
    base = Path(folder or ".") if folder or not incomplete.startswith("/") else Path("/")
    prefix = folder + "/" if folder or incomplete.startswith("/") else ""
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return []
    found = []
    for entry in entries:
        if not entry.name.startswith(stem) or (entry.name.startswith(".") and not stem.startswith(".")):
            continue
        if entry.is_dir():
            found.append(f"{prefix}{entry.name}/")
        elif entry.suffix.lower() in (".yaml", ".yml"):
            found.append(prefix + entry.name)
    return found
