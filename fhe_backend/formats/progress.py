"""The one progress callback type of the roles that work sample by sample."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

Item = TypeVar("Item")

# progress(done, total, item): ``item`` is what was just finished (the auditor's encrypt and the
# verifier pass the sample id, the server the sample's transcript record). Callers that show a
# bar ignore it; the server's journal tests read it.
Progress = Callable[[int, int, Item], None]
