"""The bundled demo challenge (``make assets``): zoo models on a zoo benchmark, in real FHE.

``assets/challenges/breast-cancer-demo/`` is a challenge on ``breast-cancer-test`` (accuracy,
``ladder:0.01``, 3/day) with three submissions: the logistic regression and the XGBoost model by
two demo submitters, and a resubmission the Ladder answers with the previous best. It is signed
by ``assets/challenges/demo-identity/``, a **demo identity**: its private key is committed so
that the build is reproducible and the Space works offline, it says ``demo: true`` in every
challenge, result and card, and it is never used for anything else. Its signatures prove
nothing about who ran the audit. The desk's work folders (ciphertexts, outputs) and the keys are
not kept; the transcripts the results are tied to are. The XGBoost run takes minutes on a busy
machine: an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..zoo import assets_dir
from .desk import Desk
from .identity import PRIVATE_KEY, Identity
from .store import CHALLENGE, WORK, Challenge, init_challenge

CHALLENGE_ID = "breast-cancer-demo"
IDENTITY_DIR = "demo-identity"
SUBMISSIONS = (("demo-alice", "breast-cancer-logreg"), ("demo-bob", "breast-cancer-xgb"),
               ("demo-alice", "breast-cancer-logreg"))


def challenges_dir() -> Path:
    return assets_dir() / "challenges"


def demo_identity(root: Path) -> Identity:
    """The committed demo identity (git does not keep file modes: restore them first)."""
    path = root / IDENTITY_DIR
    if (path / PRIVATE_KEY).is_file():
        os.chmod(path, 0o700)
        os.chmod(path / PRIVATE_KEY, 0o600)
    return Identity.open(path, name="fhe-audit DEMO identity (not a real auditor)", demo=True)


def build(root: Path | None = None) -> Challenge:
    """Build the demo challenge; a build that was interrupted (pending submissions left)
    resumes where it stopped, a finished one is rebuilt from scratch."""
    root = root or challenges_dir()
    identity = demo_identity(root)
    out = root / CHALLENGE_ID
    # Outside the assets: the keys are secret and never committed, even a demo's.
    keys = Path(tempfile.gettempdir()) / "fhe-audit-demo-challenge-keys"
    resuming = (out / CHALLENGE).is_file() and bool(Challenge.open(str(out)).pending())
    if not resuming:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(keys, ignore_errors=True)
        challenge = init_challenge("breast-cancer-test", "accuracy", "ladder:0.01", "3/day",
                                   identity, out, CHALLENGE_ID)
        for submitter, model in SUBMISSIONS:
            challenge.submit(submitter, model)
    challenge = Challenge.open(str(out))
    report = Desk(challenge, keys, identity, say=print).run(once=True)
    shutil.rmtree(keys, ignore_errors=True)
    shutil.rmtree(out / WORK, ignore_errors=True)
    for result in report.processed:
        print(f"{result['submitter']}: {result['decision']} {result['score']}")
    return challenge


if __name__ == "__main__":
    build()
