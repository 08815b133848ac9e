"""Credentials as the API and CLI see them: set, list, describe, delete — values never leave the store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control_plane.errors import NotFoundError
from control_plane.store import Store
from control_plane.store.credentials import CredentialInfo
from engine.tools.base import MissingCredentialError

__all__ = ["CredentialInfo", "CredentialService"]


class CredentialService:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def set(self, name: str, type: str, data: Mapping[str, Any],
                  description: str | None = None) -> CredentialInfo:
        return await self.store.credentials.set(name, type, data, description)

    async def list(self) -> list[CredentialInfo]:
        return await self.store.credentials.list()

    async def info(self, name: str) -> CredentialInfo:
        try:
            return await self.store.credentials.info(name)
        except MissingCredentialError:
            raise NotFoundError(f"credential '{name}' is not stored", where="credentials",
                                fix="list the credentials to see the stored names") from None

    async def delete(self, name: str) -> None:
        await self.store.credentials.delete(name)
