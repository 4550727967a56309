"""Published hidden layers and the representation audit: the layer circuits in the package (hashed,
fingerprinted, refused when tampered with), the probes' statistics on planted signals, costs and
refusals, and the audit end to end on the zoo's MLP (simulated; real FHE is heavy)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fhe_backend.audits.probing import PERMUTATIONS, binary_target, probe, reading, roc_auc
from fhe_backend.errors import AuditError, IntegrityError, NotFoundError
from fhe_backend.formats.artifacts import ArtifactError, ModelPackage, representation_zips
from fhe_backend.formats.layers import layer_of, representation_view


def _signals(n: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.normal(size=n), rng


def test_a_layer_that_makes_a_symmetric_attribute_linear_reads_beyond_the_inputs():
    X, _, _ = _signals()
    y = (np.abs(X[:, 0]) > 0.8).astype(int)  # no linear trace in the inputs: symmetric in x0
    layer = np.stack([np.maximum(X[:, 0] - 0.8, 0), np.maximum(-X[:, 0] - 0.8, 0), X[:, 1]], 1)
    p = probe(layer, X, None, y, "planted", seed=0)
    assert p["layer"]["roc_auc"] > 0.95 and p["inputs"]["roc_auc"] < 0.7
    assert p["encodes"] and p["beyond_inputs"]
    assert p["difference_vs_inputs"]["interval"][0] > 0
    assert p["permutation"]["p_value"] == pytest.approx(1 / (PERMUTATIONS + 1))
    assert "beyond what the inputs carry linearly" in reading("planted", p)


def test_a_layer_that_copies_the_inputs_encodes_no_more_than_they_do():
    X, noise, _ = _signals()
    y = (X[:, 0] + 0.5 * noise > 0).astype(int)
    p = probe(X.copy(), X, X[:, 1:], y, "linear", seed=0)
    assert p["encodes"] and not p["beyond_inputs"]
    assert p["inputs_without_attribute"]["roc_auc"] < 0.65  # x1, x2 do not carry it
    assert "no more than the inputs" in reading("linear", p)


def test_a_fair_coin_reads_no_evidence():
    X, _, rng = _signals()
    coin = rng.integers(0, 2, len(X))
    p = probe(np.maximum(X, 0), X, None, coin, "coin", seed=0)
    assert not p["encodes"] and not p["beyond_inputs"]
    low, high = p["permutation"]["interval"]
    assert low < 0.5 < high
    assert reading("coin", p).startswith("no evidence that the hidden layer encodes coin")


def test_targets_and_auc():
    y, text = binary_target(np.array(["a"] * 10 + ["b"] * 20 + ["c"] * 6))
    assert y.sum() == 20 and text == "'b' vs the rest"
    assert binary_target(np.array(["a"] * 30 + ["b"] * 4)) is None  # a fold would lack "b"
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
