"""A provider's tenants share a worker's connections to Microsoft's endpoints: a fleet opens a few TLS connections
per worker process, not one or two per tenant (each handshake costs both ends CPU)."""

from __future__ import annotations

import json

from test_online_fleet import NAMES, ROOMS, fleet  # noqa: F401  (fixture)


def test_a_fleet_plan_reuses_connections_across_tenants(cli, fleet):  # noqa: F811
    server, tenants, inventory = fleet
    result = cli("plan", ROOMS, "-i", inventory, "--limit", "provider", "--forks", "1", "--processes", "1",
                 "-o", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert sorted(o["target"] for o in json.loads(result.stdout)["targets"]) == sorted(NAMES)
    assert sum(t.log.requests for t in tenants.values()) >= 5 * len(NAMES)  # discovery, token, three reads each
    # one worker, one request at a time: every tenant's sign-in and calls go over the connection(s) kept open;
    # a session per tenant would open one per tenant at least
    assert server.connections < len(NAMES), server.connections
