"""Resource kinds: the single source of truth for what exkit manages.

Each kind module defines ``KIND`` (the Exchange object type), ``TEMPLATE`` (its Jinja2 template),
``desired(playbook)`` (the playbook's objects of that kind, as :class:`Resource` items in apply order) and
``compare(resource, current)`` (the field differences against facts read from a target).

Adding a kind: a module here, a template under templates/<platform>/, its cmdlets in toolkit/sandbox/cmdlets.py,
and tests. Kinds that Exchange Online's REST connector applies also define ``calls(resource, fact, action)``: the
cmdlets that bring one object to its desired state. :data:`KINDS` lists the modules in apply order (removals run in
reverse).
"""

from __future__ import annotations

from toolkit.resources import (
    application_access_policy, application_role_assignment, delegate, management_scope, role_assignment, role_group,
    service_principal,
)
from toolkit.playbook.model import Playbook
from toolkit.resources.base import Call, FieldChange, Resource

KINDS = (management_scope, service_principal, role_group, role_assignment, application_role_assignment,
         application_access_policy, delegate)
KIND_BY_NAME = {kind.KIND: kind for kind in KINDS}


def desired_resources(playbook: Playbook) -> list[Resource]:
    """Every object the playbook declares, in apply order (scopes before the groups and assignments using them)."""
    return [resource for kind in KINDS for resource in kind.desired(playbook)]

__all__ = ["KINDS", "KIND_BY_NAME", "Call", "FieldChange", "Resource", "desired_resources"]
