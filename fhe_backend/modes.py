"""The FHE modes of an audit, in one registry: the CLI's ``--fhe``, the orchestration, the
Space's radio buttons, labels and ``?fhe=`` links and the challenge desk all read it.

- ``execute``: real FHE, the auditor decrypts every prediction;
- ``simulate``: Concrete's simulator of the same circuit, no encryption (a preview);
- ``sealed``: real FHE on the model's sealed circuit; only aggregate counts are decrypted
  (:mod:`fhe_backend.sealed.circuit`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import AuditError

EXECUTE = "execute"
SIMULATE = "simulate"
SEALED = "sealed"


@dataclass(frozen=True)
class Mode:
    name: str  # the value of --fhe, fhe_mode and ?fhe=
    label: str  # short, in banners and figure labels
    choice: str  # the radio button's text
    description: str
    per_sample: bool  # the key holder decrypts one output per sample
    real_fhe: bool  # keys are generated and the server runs on ciphertexts


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode(EXECUTE, "real FHE (execute)",
         "Real FHE (execute): keygen, encrypt, run on ciphertexts, decrypt",
         "every role in turn on ciphertexts; the auditor decrypts each prediction",
         per_sample=True, real_fhe=True),
    Mode(SIMULATE, "simulation (simulate, no encryption)",
         "Simulate: the same circuit in clear, no encryption (seconds)",
         "Concrete's simulator runs the same circuit in clear: a preview, no encryption",
         per_sample=True, real_fhe=False),
    Mode(SEALED, "Sealed (aggregates only)",
         "Sealed (aggregates only): counts computed under FHE, only they are decrypted",
         "the model's sealed circuit counts, under FHE, the predictions per true label and "
         "group in batches; only those counts are decrypted (no score, but a batch's counts "
         "can pin predictions)",
         per_sample=False, real_fhe=True),
)}
PER_SAMPLE = tuple(name for name, m in MODES.items() if m.per_sample)


def get(name: str, allowed: tuple[str, ...] | None = None) -> Mode:
    """The mode called ``name``; one sentence naming the known ones otherwise."""
    names = allowed if allowed is not None else tuple(MODES)
    if not isinstance(name, str) or name not in names:
        raise AuditError(f"Unknown FHE mode {name!r}; use {known(names)}.")
    return MODES[name]


def known(names: tuple[str, ...] | None = None) -> str:
    """``execute, simulate or sealed``."""
    names = tuple(MODES) if names is None else names
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def label(name: str) -> str:
    return MODES[name].label if name in MODES else name


def of_report(report: dict[str, Any]) -> str:
    """The mode that made a report: a sealed report keeps ``fhe_mode: execute`` (the JSON
    contract of ``audit --sealed``) and says ``sealed: true``."""
    return SEALED if report.get("sealed") else str(report["fhe_mode"])
