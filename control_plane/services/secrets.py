"""The credential values this control plane stores, for one purpose only: masking them (spec section 10).

`await SecretValues(store).all()` decrypts every stored credential and returns the set of its values
(strings and numbers of 4 characters or more, nested ones included), so that what leaves through a
boundary that did not see the credential being used (a diagnosis, an LLM prompt) can be redacted by exact
value. The values never leave the process through this service: callers hand them to a redactor.
"""

from __future__ import annotations

import logging
from typing import Any

from control_plane.store import Store

log = logging.getLogger(__name__)

MIN_LENGTH = 4  # shorter values (a port, "true") would mask ordinary text


def values_of(data: Any, found: set[str] | None = None) -> set[str]:
    found = set() if found is None else found
    if isinstance(data, dict):
        for item in data.values():
            values_of(item, found)
    elif isinstance(data, list):
        for item in data:
            values_of(item, found)
    elif isinstance(data, (str, int, float)) and not isinstance(data, bool):
        text = str(data)
        if len(text) >= MIN_LENGTH:
            found.add(text)
    return found


class SecretValues:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def all(self) -> frozenset[str]:
        """Every stored credential value; a credential that cannot be decrypted is skipped (logged)."""
        found: set[str] = set()
        for info in await self.store.credentials.list():
            try:
                credential = await self.store.credentials.get(info.name)
            except Exception as exc:  # a key that cannot open it: nothing to mask from it here
                log.warning("credential %s could not be read for redaction (%s)", info.name,
                            type(exc).__name__)
                continue
            values_of(credential.data, found)
        return frozenset(found)
