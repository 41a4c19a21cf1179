"""Resource kinds: the single source of truth for what exkit manages.

Each kind module defines ``KIND`` (the Exchange object type), ``TEMPLATE`` (its Jinja2 template),
``desired(playbook)`` (the playbook's objects of that kind, as :class:`Resource` items in apply order) and
``compare(resource, current)`` (the field differences against facts read from a target).

Adding a kind: a module here, a template under templates/<platform>/, its cmdlets in toolkit/sandbox/cmdlets.py,
and tests. :data:`KINDS` lists the modules in apply order (removals run in reverse).
"""

from __future__ import annotations

from toolkit.resources import delegate, management_scope, role_assignment, role_group
from toolkit.resources.base import Resource, desired_resources

KINDS = (management_scope, role_group, role_assignment, delegate)

__all__ = ["KINDS", "Resource", "desired_resources"]
