"""The bundled demo challenge (``make assets``): zoo models on a zoo benchmark, in real FHE.

``assets/challenges/breast-cancer-demo/`` is a challenge on ``breast-cancer-test`` (accuracy,
``ladder:0.01``, 3/day) with three submissions: the XGBoost model, signed by a committed demo
submitter identity and audited **sealed** (only one total of its confusion counts is
decrypted), then the logistic regression twice by another demo submitter (unsigned, audited per
sample; the
resubmission does not beat the leader by the step, so the Ladder releases nothing for it). The
logistic regression has a sealed module too (188 MB of sealed keys);
the demo audits it per sample so that the leaderboard shows both modes. It is signed by
``assets/challenges/demo-identity/``, a **demo identity**: its private key is committed so
that the build is reproducible and the Space works offline, it says ``demo: true`` in every
challenge, result and card, and it is never used for anything else. Its signatures prove
nothing about who ran the audit. The desk's work folders (ciphertexts, outputs) and the keys are
not kept; the transcripts the results are tied to are. The sealed XGBoost audit takes minutes:
measured on this 2-core machine (load average about 1), the whole build took 275 s, most of it
the sealed XGBoost's keygen and its 11 batches added up into one total.
The logistic regression's per-sample runs take seconds. An interrupted build resumes
where it stopped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..hub.zoo import assets_dir
from . import notes
from .desk import AUTO, PER_SAMPLE, Desk
from .identity import PRIVATE_KEY, Identity
from .store import CHALLENGE, WORK, Challenge, init_challenge

CHALLENGE_ID = "breast-cancer-demo"
IDENTITY_DIR = "demo-identity"
SUBMITTER_IDENTITY_DIR = "demo-submitter-identity"
# (submitter, model, signed, desk mode), in the order the desk sees them (the Ladder has one
# state per challenge): the sealed XGBoost first, then the logistic regression, which beats it
# by more than the step, then its resubmission, which is not released.
SUBMISSIONS = (("demo-bob", "breast-cancer-xgb", True, AUTO),
               ("demo-alice", "breast-cancer-logreg", False, PER_SAMPLE),
               ("demo-alice", "breast-cancer-logreg", False, PER_SAMPLE))


def challenges_dir() -> Path:
    return assets_dir() / "challenges"


def demo_identity(root: Path, folder: str = IDENTITY_DIR,
                  name: str = "fhe-audit DEMO identity (not a real auditor)") -> Identity:
    """A committed demo identity (git does not keep file modes: restore them first)."""
    path = root / folder
    if (path / PRIVATE_KEY).is_file():
        os.chmod(path, 0o700)
        os.chmod(path / PRIVATE_KEY, 0o600)
    return Identity.open(path, name=name, demo=True)


def build(root: Path | None = None) -> Challenge:
    """Build the demo challenge; a build that was interrupted (fewer results than submissions)
    resumes where it stopped, a finished one is rebuilt from scratch."""
    root = root or challenges_dir()
    identity = demo_identity(root)
    out = root / CHALLENGE_ID
    # Outside the assets: the keys are secret and never committed, even a demo's.
    keys = Path(tempfile.gettempdir()) / "fhe-audit-demo-challenge-keys"
    submitter = demo_identity(root, SUBMITTER_IDENTITY_DIR,
                              "fhe-audit DEMO submitter (not a real model owner)")
    challenge = Challenge.open(str(out)) if (out / CHALLENGE).is_file() else None
    if challenge is None or len(challenge.results()) == len(SUBMISSIONS):
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(keys, ignore_errors=True)
        # The identity's private notes of the old build (salted scores) go with it.
        notes.forget(identity, CHALLENGE_ID)
        challenge = init_challenge("breast-cancer-test", "accuracy", "ladder:0.01", "3/day",
                                   identity, out, CHALLENGE_ID)
    for mode in dict.fromkeys(m for *_, m in SUBMISSIONS):  # each pass, in order, resumable
        pass_of = [s for s in SUBMISSIONS if s[3] == mode]
        mine = [s for s in challenge.submissions() if s["submitter"] in {p[0] for p in pass_of}]
        for who, model, signed, _ in pass_of[len(mine):]:
            challenge.submit(who, model, identity=submitter if signed else None)
        report = Desk(Challenge.open(str(out)), keys, identity, mode=mode, say=print).run(
            once=True)
        for result in report.processed:
            score = "" if result["score"] is None else f" {result['score']}"
            print(f"{result['submitter']}: {result['decision']}{score} ({result['mode']})")
    shutil.rmtree(keys, ignore_errors=True)
    shutil.rmtree(out / WORK, ignore_errors=True)
    return Challenge.open(str(out))


if __name__ == "__main__":
    build()
