"""Connectors: where scripts run. Each implements :class:`toolkit.targets.base.Target`."""
