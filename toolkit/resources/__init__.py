"""Resource kinds: the single source of truth for what exkit manages.

Each kind module defines ``KIND`` (the Exchange object type), ``TEMPLATE`` (its Jinja2 template),
``desired(playbook)`` (the playbook's objects of that kind, as :class:`Resource` items in apply order) and
``compare(resource, current)`` (the field differences against facts read from a target).

Adding a kind: a module here, a template under templates/<platform>/, its cmdlets in toolkit/sandbox/cmdlets.py,
and tests. :data:`KINDS` lists the modules in apply order (removals run in reverse).
"""

from __future__ import annotations

from toolkit.resources import delegate, management_scope, role_assignment, role_group
from toolkit.resources.base import FieldChange, Resource, desired_resources

KINDS = (management_scope, role_group, role_assignment, delegate)
KIND_BY_NAME = {kind.KIND: kind for kind in KINDS}

__all__ = ["KINDS", "KIND_BY_NAME", "FieldChange", "Resource", "desired_resources"]
