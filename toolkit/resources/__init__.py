"""Resource kinds: what exkit manages, one module per kind.

Each kind module defines ``KIND`` (the Exchange object type), ``TEMPLATE`` (its Jinja2 template), ``desired(playbook)``
(the playbook's objects of that kind, as :class:`Resource` items in apply order) and ``view(org, resource)`` (how the
object stands in an organisation, for a plan's before → after; None when absent).

What must change is decided in one place only: the kind's template. Its ``present``/``absent`` branches are the
script that runs on a target; its ``facts`` branch prints the objects those branches read. A plan runs the same
script against those objects in the sandbox (toolkit/plan.py), and the Exchange Online connector runs it in exkit's
interpreter with each cmdlet sent to the REST endpoint.

Adding a kind: a module here (listed in :data:`KINDS`, apply order; removals run in reverse), its template under
templates/common/ or templates/<platform>/, the cmdlets it uses in toolkit/sandbox/cmdlets.py (and how their output
reads back in toolkit/sandbox/mirror.py), and tests. tests/test_resource_kinds.py fails when a kind misses one.
"""

from __future__ import annotations

from toolkit.resources import (
    application_access_policy, application_role_assignment, delegate, management_scope, role_assignment, role_group,
    service_principal,
)
from toolkit.playbook.model import Playbook
from toolkit.resources.base import FieldChange, Resource

KINDS = (management_scope, service_principal, role_group, role_assignment, application_role_assignment,
         application_access_policy, delegate)
KIND_BY_NAME = {kind.KIND: kind for kind in KINDS}


def desired_resources(playbook: Playbook) -> list[Resource]:
    """Every object the playbook declares, in apply order (scopes before the groups and assignments using them)."""
    return [resource for kind in KINDS for resource in kind.desired(playbook)]

__all__ = ["KINDS", "KIND_BY_NAME", "FieldChange", "Resource", "desired_resources"]
