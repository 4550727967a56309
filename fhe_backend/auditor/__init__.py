"""The auditor: the only role that holds a secret key. Nothing outside this folder (and the
all-roles paths ``orchestration.py``, ``latency.py``, the owner's self-check and ``verify --keys``)
imports it.

    client.py      keys, encryption, decryption of a per-sample audit (``Auditor``)
    sealed.py      the sealed audit's auditor: its own keys, batch encryption, counts decrypted
    layers.py      a published hidden layer's auditor: its own keys, activations decrypted
    keydirs.py     key directories kept 0700/0600, and the refusals inside them
    ledger.py      the private ledger: which ciphertext is which sample (JSON lines)
    probes.py      query plans: the real samples and the probes an audit adds
    subsample.py   which rows an audit of N samples takes (seeded, stratified; or the first)
    predictions.py the per-sample export of decrypted predictions (``--predictions``)
    benchmarks.py  plaintext benchmarks: tables, labels, sensitive columns
"""

from .._lazy import attach

__all__ = ["Auditor", "LayerAuditor", "SealedAuditor"]
__getattr__ = attach(__name__, {"Auditor": "client", "LayerAuditor": "layers",
                                "SealedAuditor": "sealed"})
