"""How long the access impact takes on a large directory: ``python benchmarks/impact.py --recipients N``.

Builds a directory of N recipients (users, shared mailboxes, rooms and equipment in offices and two OUs, security
groups), then measures ``impact.change_impact`` for classic.yaml against a copy whose scope also matches user
mailboxes (the widening of the README's example), and a live-style organisation with a few hundred role assignments
and an exclusive scope. Prints one line: ``recipients=N assignments=A impact_s=… live_s=… widening=…``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from toolkit.playbook.validate import require_playbook  # noqa: E402
from toolkit.verify import access, impact  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TYPES = ("UserMailbox",) * 8 + ("SharedMailbox", "RoomMailbox", "RoomMailbox", "EquipmentMailbox")
OFFICES = ("Berlin", "Munich", "London", "New York")


def directory(count: int) -> list[dict[str, str]]:
    rows = []
    for index in range(count):
        kind = TYPES[index % len(TYPES)]
        ou = "OU=Rooms,DC=contoso,DC=com" if kind in ("RoomMailbox", "EquipmentMailbox") else "OU=Users,DC=contoso,DC=com"
        rows.append({"Name": f"R{index}", "PrimarySmtpAddress": f"r{index}@contoso.com", "RecipientTypeDetails": kind,
                     "Office": OFFICES[index % len(OFFICES)], "DistinguishedName": f"CN=R{index},{ou}",
                     "CustomAttribute1": "bookable" if index % 3 == 0 else ""})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10000)
    parser.add_argument("--assignments", type=int, default=200)
    args = parser.parse_args()
    old, _ = require_playbook(REPO / "playbooks" / "classic.yaml", {})
    wider_text = (REPO / "playbooks" / "classic.yaml").read_text().replace(
        "    rooms: true\n", "    filter: \"RecipientTypeDetails -eq 'RoomMailbox' -or RecipientTypeDetails -eq "
                            "'UserMailbox'\"\n")
    with tempfile.TemporaryDirectory() as scratch:
        wider = Path(scratch) / "wider.yaml"
        wider.write_text(wider_text)
        new, _ = require_playbook(wider, {})
    org = access.from_recipients(directory(args.recipients), "benchmark")
    started = time.perf_counter()
    offline = impact.change_impact(org, old, new)
    offline_s = time.perf_counter() - started
    live = access.overlay(org, old)
    live.scopes["vip"] = access.Scope("VIP", "CustomAttribute1 -eq 'bookable' -and Office -eq 'Berlin'", None, True)
    for index in range(args.assignments):
        scope = "Room mailboxes" if index % 2 else None
        live.assignments[f"a{index}"] = access.Assignment(f"A{index}", "Mail Recipients", f"r{index * 7}@contoso.com",
                                                          "User", scope)
    started = time.perf_counter()
    planned = impact.plan_impact(live, new)
    live_s = time.perf_counter() - started
    print(f"recipients={args.recipients} assignments={len(live.assignments)} impact_s={offline_s:.2f} "
          f"live_s={live_s:.2f} widening={offline.widening and planned.widening}")


if __name__ == "__main__":
    main()
