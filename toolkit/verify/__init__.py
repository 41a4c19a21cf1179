"""Read back and prove: the snapshot of a target's RBAC, verify checks, scope previews, exports and reports."""
