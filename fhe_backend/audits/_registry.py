"""The audit kinds, in the order their queries are planned and their results reported, and
the options that choose among them. Adding a kind: its module here, its view in
:mod:`fhe_backend.ui.bias_render`."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AuditError
from . import _accuracy, _counterfactual, _fairness, _importance, _representation, _surrogate
from ._kind import AuditKind

AUDITS: dict[str, AuditKind] = {kind.name: kind for kind in (
    _accuracy.KIND, _fairness.KIND, _counterfactual.KIND, _importance.KIND, _surrogate.KIND,
    _representation.KIND)}
DEFAULT_SEED = 0


def optional_kinds() -> list[AuditKind]:
    """The kinds one chooses (the Space's choices): all but those every audit measures."""
    return [kind for kind in AUDITS.values() if not kind.always]


def audits_help() -> str:
    """The CLI's help of ``--audits``."""
    always = " and ".join(kind.name for kind in AUDITS.values() if kind.always)
    return (f"comma-separated: {','.join(AUDITS)} ({always} is always included)")


@dataclass(frozen=True)
class AuditOptions:
    audits: tuple[str, ...] = ("accuracy",)
    budget: int | None = None  # most FHE queries the auditor is willing to pay for
    permutation_repeats: int = 1
    synthetic_per_sample: int = 2  # surrogate probes per real sample
    seed: int = DEFAULT_SEED  # permutations and synthetic probes; recorded in the report

    @classmethod
    def parse(cls, audits: str | list[str] | tuple[str, ...], budget: int | None = None,
              seed: int = DEFAULT_SEED) -> AuditOptions:
        listed = audits.split(",") if isinstance(audits, str) else audits
        if not isinstance(listed, list | tuple) or not all(isinstance(a, str) for a in listed):
            # the Space's API takes any JSON here
            raise AuditError(f"The audits must be names separated by commas, from "
                             f"{', '.join(AUDITS)}.")
        # Empty entries ("accuracy," or "") name nothing: accuracy is measured anyway.
        names = [a.strip() for a in listed if a.strip()]
        unknown = [a if len(a) <= 40 else a[:40] + "…" for a in names if a not in AUDITS]
        if unknown:
            raise AuditError(f"Unknown audit(s) {', '.join(unknown[:5])}; choose from "
                             f"{', '.join(AUDITS)}.")
        always = [kind.name for kind in AUDITS.values() if kind.always]
        return cls(audits=tuple(dict.fromkeys([*always, *names])), budget=budget,
                   seed=seed)
