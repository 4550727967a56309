"""The challenge's card (README.md of the folder and of its Hub dataset repo)."""

from __future__ import annotations

from typing import Any

DEMO_WARNING = (
    "**Demo identity.** This challenge and its results are signed by a *demo* identity whose "
    "private key is committed with the project so that `make assets` is reproducible. It is "
    "labelled as a demo everywhere it is shown and is never used for anything else: anyone can "
    "sign with it, so its signatures prove nothing about who ran the audit.")

CATCH_PROBABILITY = (
    "A run made by another server (only the one a signed submission names as its runner) is "
    "spot-checked before it is decrypted: the desk re-executes k outputs drawn at random and "
    "compares the decrypted labels. If the server altered m of the n outputs, the check catches "
    "the run with probability 1 - C(n-m, k) / C(n, k); k is chosen for a 95% chance to catch a "
    "change of one release step (ceil(step x n) altered samples: for n = 171 and a 0.01 step, "
    "k = 133), and each result records k and the share of altered outputs a pass still allows "
    "(95% upper bound).")


def challenge_card(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(YAML metadata, markdown body) for a challenge.json."""
    bench = data["benchmark"]
    identity = data["identity"]
    metadata = {"tags": ["fhe-audit", "concrete-ml", "leaderboard"],
                "fhe_audit": {"kind": "challenge", "id": data["id"], "metric": data["metric"],
                              "policy": data["policy"], "public_key": identity["public_key"],
                              "demo": bool(identity.get("demo"))}}
    lines = [f"# Challenge {data['id']}", ""]
    if identity.get("demo"):
        lines += [DEMO_WARNING, ""]
    lines += [
        f"Models are scored on a hidden benchmark (`{bench['id']}` v{bench['version']}, "
        f"{bench['n_samples']} samples) in fully homomorphic encryption: the server that runs a "
        "model never sees the inputs, and the auditor who holds the labels never sees the "
        "model's weights.", "",
        f"- Metric: **{data['metric']}**",
        f"- Release policy: `{data['policy']}` (a ladder keeps one state for the whole "
        "challenge: a score is released only when it beats the best score released so far, by "
        "anyone, by more than the step; otherwise the result says so and shows no score)",
        f"- Quota: {data['quota']} accepted submissions per submitter (names case-folded; UTC "
        "days of the desk's receipt)",
        f"- Budget: {data.get('budget') or 'unlimited'} hidden-set evaluations per UTC day, all "
        "submitters together",
        f"- Auditor: {identity['name']}, Ed25519 public key `{identity['public_key']}`",
        f"- Benchmark commitment (salted SHA-256): `{bench['inputs_sha256']}`", "",
        "Every file in `results/` is signed by the key above and names the transcript in "
        "`transcripts/` it was computed from. Check one with "
        "`python -m fhe_backend verify-result results/ID.json --challenge THIS_FOLDER`; "
        "see the ranked table with `python -m fhe_backend leaderboard --challenge THIS_FOLDER`.",
        "", CATCH_PROBABILITY, ""]
    return metadata, "\n".join(lines)
