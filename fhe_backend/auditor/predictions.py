"""The auditor's per-sample export: one CSV row per decrypted real sample (its id, the class
predicted and a score per class), for analyses the published metrics do not cover.

Per-sample audits only: a sealed run decrypts aggregate counts, never a sample's answer, so
there is nothing to export (refused in one sentence). The file is the auditor's, like the
decrypted results: nothing writes it into a published folder.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import AuditError
from ..formats import atomic
from .client import Decrypted
from .keydirs import refuse_inside_key_dir

SEALED_REFUSAL = ("A sealed audit decrypts only aggregate counts, never a sample's prediction; "
                  "drop --predictions, or audit per sample (--fhe execute or simulate).")


def check_predictions(predictions: str | None, sealed: bool) -> None:
    """Refuse ``--predictions`` before anything runs (an FHE run takes minutes, and its
    decrypted answers were lost when the file name was refused only at the end): for a sealed
    run, a folder, a folder that does not exist, or a place inside a key directory (the file
    would replace a keyset record or a ledger there)."""
    if not predictions:
        return
    if sealed:
        raise AuditError(SEALED_REFUSAL)
    path = Path(predictions)
    if path.is_dir():
        raise AuditError(f"{path} is a folder; --predictions takes a file name (e.g. "
                         "predictions.csv).")
    if not path.parent.is_dir():
        raise AuditError(f"{path.parent} does not exist; create it or write the predictions "
                         "elsewhere.")
    refuse_inside_key_dir(path, "the predictions")


def write_predictions(path: Path, decrypted: Decrypted, class_names: list[str]) -> int:
    """Write the real samples' predictions to ``path`` (CSV, atomically; an existing file is
    replaced); returns the rows. Failed samples have no answer and no row."""
    real = decrypted.select(None)
    frame = pd.DataFrame({"sample_id": real.sources,
                          "predicted": [class_names[int(i)] for i in real.predictions]})
    for j, name in enumerate(class_names):
        frame[f"score_{name}"] = real.scores[:, j] if len(real.scores) else []
    check_predictions(str(path), sealed=False)  # the folder may have changed since
    with atomic.replacing(path) as tmp:
        frame.to_csv(tmp, index=False)
    return len(frame)
