"""The chain that turns a sealed run's batch outputs into its one total.

The server runs it after the batches (:mod:`fhe_backend.server.run`), and the verifier and the
challenge's spot check run it again on their own re-executed batches: ``add`` along the batches
in the benchmark's order, then ``noise`` when the server adds some. Every step runs in the
sandboxed evaluation child of the package's sealed module (its ciphertexts and keys come from
others).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AuditError, PrivacyError
from ..formats.bundle import pack_values
from ..formats.hashing import sha256_bytes
from ..untrusted.sandbox import IsolatedCircuit
from . import dp as dp_
from .circuit import ADD, COUNT, NOISE


@dataclass(frozen=True)
class Total:
    blob: bytes  # the serialized total, as published
    function: str  # the module function that made it (its output encoding)
    chain_sha256: list[str]  # the hash of each step's output, in order
    n_batches: int

    def record(self, dp: dict[str, Any] | None) -> dict[str, Any]:
        """The transcript's ``total`` entry (the noise mechanism, never the noise)."""
        return {"function": self.function, "chain_sha256": self.chain_sha256,
                "output_sha256": sha256_bytes(self.blob), "n_batches": self.n_batches, "dp": dp}


def add_up(circuit: Any, outputs: Iterable[bytes], noise: list[int] | None = None) -> Total:
    """``add(...add(add(b1, b2), b3)..., bK)`` then ``noise(total, noise)``; one batch is its
    own total. ``circuit``: an :class:`~fhe_backend.untrusted.sandbox.IsolatedCircuit` of the
    sealed module."""
    total, function, chain, n = b"", COUNT, [], 0
    for output in outputs:
        n += 1
        if n == 1:
            total = output
            continue
        total, function = circuit.run(pack_values([total, output]), function=ADD), ADD
        chain.append(sha256_bytes(total))
    if n == 0:
        raise AuditError("Every batch of the sealed run failed; there is no total to publish.")
    if noise is not None:
        total, function = circuit.run(pack_values([total]), function=NOISE, clear=noise), NOISE
        chain.append(sha256_bytes(total))
    return Total(total, function, chain, n)


def rerun(server_zip: Path, raw_keys: bytes, rows: Iterable[tuple[str, bytes]],
          done: Callable[[str], None] | None = None) -> Total:
    """The verifier's and the spot check's side: every batch's ``count`` re-executed in the
    sandbox and added up along the same chain (no noise); ``done`` hears each batch's id."""
    with IsolatedCircuit(server_zip, raw_keys) as circuit:
        def counts() -> Iterator[bytes]:
            for sample_id, ciphertext in rows:
                yield circuit.run(ciphertext, function=COUNT)
                if done:
                    done(sample_id)

        return add_up(circuit, counts())


def total_problem(transcript: Any) -> str | None:
    """Why a sealed transcript's ``total`` entry is not one total of all its batches, as
    :func:`add_up` records it (None when it is): ``count`` only for a one-batch run (else a
    batch's counts, which pin predictions, would pass for the total), one ``add`` per further
    batch then ``noise``, the chain ending in the published output, and ``noise`` exactly when a
    known mechanism and a valid epsilon are named (noisy counts read as noise-free would get
    noise-free intervals). Checked before anything is decrypted or compared."""
    total = transcript.total
    function, dp, chain = total.get("function"), total.get("dp"), total.get("chain_sha256")
    n = total.get("n_batches")
    kept = sum(1 for r in transcript.samples if not r.error)
    epsilon = dp.get("epsilon") if isinstance(dp, dict) else None
    try:
        known = isinstance(epsilon, int | float) and not isinstance(epsilon, bool) and bool(
            dp_.describe(epsilon, str(dp.get("mechanism"))))
    except PrivacyError:
        known = False
    ok = (isinstance(n, int) and not isinstance(n, bool) and n == kept >= 1
          and function in (COUNT, ADD, NOISE) and (function == NOISE) == (dp is not None)
          and (function == COUNT) == (n == 1 and dp is None)
          and (dp is None or known)
          and isinstance(chain, list) and len(chain) == n - 1 + (dp is not None)
          and (not chain or chain[-1] == total.get("output_sha256"))
          and (n == 1 or total.get("output_sha256") not in
               [r.output_sha256 for r in transcript.samples]))
    return None if ok else ("does not describe one total of all its batches (count for one "
                            "batch, add along the others, noise with a known mechanism and "
                            "epsilon)")
