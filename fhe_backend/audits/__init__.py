"""Audits on the auditor's side: which queries each audit needs, and the results computed from
decrypted outputs joined with the plaintext the auditor kept (labels, sensitive attributes).

One module per kind, each an :class:`AuditKind` listed in :data:`AUDITS` (the registry the
CLI's ``--audits``, the Space's Bias tab and the Markdown report read):

    accuracy        the real samples; scikit-learn metrics              (_accuracy.py)
    fairness        the real samples + sensitive attributes; fairlearn  (_fairness.py)
    counterfactual  one probe per sample and other value of each
                    sensitive attribute                                  (_counterfactual.py)
    importance      occlusion (one probe per sample and input column)
                    and permutation, on a sized subsample                (_importance.py)
    surrogate       synthetic probes; a shallow tree and a sparse
                    linear model fitted to them                          (_surrogate.py)
    representation  the real samples on each published hidden layer's
                    circuit; linear probes of the activations            (_representation.py)

``_pipeline.py`` runs the chosen kinds: the plan, its cost, the evaluation. What the kinds
compute, shared with the sealed report and the challenge:

    metrics.py      classification metrics from decrypted predictions, each with an interval
    fairness.py     group fairness (fairlearn's definitions)
    explain.py      counterfactual flips, feature importance, surrogates from probe outputs
    sampling.py     the importance audit's subsample, by a stated stopping rule
    probing.py      linear probes of a representation, against the inputs and chance
    uncertainty.py  95% intervals for every reading, and how a reading is printed
    selfcheck.py    the coverage of those intervals on synthetic sets (selfcheck intervals)
"""

from __future__ import annotations

from typing import Any

from ._kind import AuditKind, Outputs, Planning, labels_for, sensitive_attributes
from ._registry import AUDITS, DEFAULT_SEED, AuditOptions, audits_help, optional_kinds

# The pipeline pulls pandas, scikit-learn and Concrete: loaded on first use, so that reading
# the registry (the CLI's --help) stays instant.
_PIPELINE = ("build_plan", "clear_reference", "evaluate", "plan_summary", "readings", "score",
             "simulate", "simulate_layer", "simulate_predictions")

__all__ = ["AUDITS", "DEFAULT_SEED", "AuditKind", "AuditOptions", "Outputs", "Planning",
           "audits_help", "labels_for", "optional_kinds", "sensitive_attributes", *_PIPELINE]


def __getattr__(name: str) -> Any:
    if name in _PIPELINE:
        from . import _pipeline

        return getattr(_pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
