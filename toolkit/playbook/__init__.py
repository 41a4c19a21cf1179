"""Playbooks: load (YAML with positions) → validate (typed model + semantic checks) → lint (least privilege)."""
