"""A sealed run's ``total`` entry, lied about: the auditor decrypts nothing unless it describes
one total of all the run's batches as the server's chain makes it (no FHE here: a stub auditor
whose key would fail the test if it were ever loaded)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest

from fhe_backend.auditor.sealed import SealedAuditor
from fhe_backend.errors import MismatchError
from fhe_backend.sealed.circuit import ADD, COUNT, NOISE
from fhe_backend.sealed.dp import describe

BATCHES = [f"{i:064x}" for i in range(1, 4)]  # each batch's output hash


def _run(**changes):
    total = {"function": ADD, "chain_sha256": ["a" * 64, "f" * 64], "output_sha256": "f" * 64,
             "n_batches": 3, "dp": None}
    total.update(changes)
    samples = [SimpleNamespace(sample_id=f"b{i}", error=None, output_sha256=h)
               for i, h in enumerate(BATCHES)]
    return SimpleNamespace(transcript=SimpleNamespace(total=total, samples=samples))


class Decrypted(Exception):
    pass


def _stub() -> SimpleNamespace:
    def load() -> None:
        raise Decrypted

    return SimpleNamespace(keys=SimpleNamespace(load_secret_keys=load),
                           layout=SimpleNamespace(cells=lambda v: v))


NOISY = {"function": NOISE, "dp": describe(1.0),
         "chain_sha256": ["a" * 64, "b" * 64, "f" * 64]}
LIES = {
    "a batch's counts passed off as the total": {"function": COUNT, "chain_sha256": [],
                                                 "output_sha256": BATCHES[0]},
    "a chain prefix (two batches of three)": {"chain_sha256": ["f" * 64]},
    "the chain ends elsewhere": {"chain_sha256": ["a" * 64, "b" * 64]},
    "a batch's output under add": {"output_sha256": BATCHES[2],
                                   "chain_sha256": ["a" * 64, BATCHES[2]]},
    "n_batches lies": {"n_batches": 2, "chain_sha256": ["f" * 64]},
    "n_batches a string": {"n_batches": "3"},
    "n_batches true": {"n_batches": True, "chain_sha256": [], "function": COUNT},
    "noise without dp": {**NOISY, "dp": None},
    "dp without noise": {"dp": describe(1.0)},
    "dp empty (noisy counts read as noise-free)": {**NOISY, "dp": {}},
    "epsilon a string": {**NOISY, "dp": {**describe(1.0), "epsilon": "1"}},
    "epsilon absurd": {**NOISY, "dp": {**describe(1.0), "epsilon": 1e9}},
    "epsilon nan": {**NOISY, "dp": {**describe(1.0), "epsilon": float("nan")}},
    "unknown mechanism": {**NOISY, "dp": {**describe(1.0), "mechanism": "none"}},
    "dp a list": {**NOISY, "dp": [1.0]},
    "chain not a list": {"chain_sha256": "f" * 64},
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_lying_total_entry_is_refused_before_any_key_is_loaded(lie):
    with pytest.raises(MismatchError, match="one total of all its batches"):
        SealedAuditor.decrypt_total(_stub(), _run(**copy.deepcopy(LIES[lie])), b"")


@pytest.mark.parametrize("honest", [{}, NOISY, {"function": COUNT, "n_batches": 1,
                                                "chain_sha256": [], "output_sha256": "0" * 64}])
def test_an_honest_total_entry_reaches_the_key(honest):
    run = _run(**copy.deepcopy(honest))
    if honest.get("n_batches") == 1:
        run.transcript.samples = run.transcript.samples[:1]
        run.transcript.total["output_sha256"] = BATCHES[0]
    with pytest.raises(Decrypted):
        SealedAuditor.decrypt_total(_stub(), run, b"")


@pytest.mark.parametrize("field", [{"sample_id": ["b0"]}, {"sample_id": 7},
                                   {"output_sha256": ["f" * 64]}, {"seconds": "1"},
                                   {"error": {"x": 1}}])
def test_a_per_sample_record_of_the_wrong_type_is_one_sentence(field):
    """Sample ids and hashes are sorted, hashed and compared by decrypt and verify: a list or a
    number in their place is refused when the transcript is read, not a traceback later."""
    from fhe_backend.errors import ArtifactError
    from fhe_backend.formats.artifacts import SampleRecord, Transcript

    good = Transcript("m", "f", "b", "k", "ks", "i", "e", "o", "execute", 1, 0, 1.0, 1.0,
                      [SampleRecord("b0", 1.0, "f" * 64, None, "local:1", "t", "t")], {}, {},
                      "t", "t").to_dict()
    assert Transcript.from_dict(good, "run").samples[0].sample_id == "b0"
    good["samples"][0].update(field)
    with pytest.raises(ArtifactError, match="malformed per-sample records"):
        Transcript.from_dict(good, "run")
