"""exkit: Exchange RBAC for room-booking service accounts, as code."""

__version__ = "0.1.0"
