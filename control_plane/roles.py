"""The roles of API tokens, in order: each includes the ones before it (docs/api.md, Auth).

A module of its own, with no imports, so that the command line can name them in `--help` without
loading the store."""

from __future__ import annotations

ROLES = ("viewer", "operator", "approver", "admin")
