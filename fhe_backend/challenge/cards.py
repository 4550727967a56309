"""The challenge's card (README.md of the folder and of its Hub dataset repo)."""

from __future__ import annotations

from typing import Any

DEMO_WARNING = (
    "**Demo identity.** This challenge and its results are signed by a *demo* identity whose "
    "private key is committed with the project so that `make assets` is reproducible. It is "
    "labelled as a demo everywhere it is shown and is never used for anything else: anyone can "
    "sign with it, so its signatures prove nothing about who ran the audit.")

CATCH_PROBABILITY = (
    "A run made by another server is spot-checked before it is decrypted: the desk re-executes "
    "k samples drawn at random and compares the decrypted labels. If the server altered m of "
    "the n outputs, the check misses all of them with probability C(n-m, k) / C(n, k) <= "
    "(1 - m/n)^k, so it catches the run with probability at least 1 - (1 - m/n)^k (k = 20 "
    "catches a server that altered 10% of the outputs with probability >= 1 - 0.9^20, "
    "about 0.88).")


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
        f"- Release policy: `{data['policy']}` (a ladder releases a new score only when it "
        "beats the submitter's best released score by more than the step)",
        f"- Quota: {data['quota']} per submitter (UTC days)",
        f"- Auditor: {identity['name']}, Ed25519 public key `{identity['public_key']}`",
        f"- Benchmark commitment (salted SHA-256): `{bench['inputs_sha256']}`", "",
        "Every file in `results/` is signed by the key above and names the transcript in "
        "`transcripts/` it was computed from. Check one with "
        "`python -m fhe_backend verify-result results/ID.json --challenge THIS_FOLDER`; "
        "see the ranked table with `python -m fhe_backend leaderboard --challenge THIS_FOLDER`.",
        "", CATCH_PROBABILITY, ""]
    return metadata, "\n".join(lines)
