"""The op allow-list holds every circuit the supported model families produce.

The list in ``fhe_backend/untrusted/mlir_policy.py`` was derived from these circuits: if a family
the project supports (built-in linear, tree and neural-net classifiers, torch modules with the
ops Concrete ML supports) starts to need another operation, this test names it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification

from fhe_backend.untrusted.mlir_policy import check_mlir

X, Y = make_classification(n_samples=120, n_features=6, n_classes=3, n_informative=4,
                           random_state=0)
X = X.astype(np.float32)


def builtins() -> dict:
    from concrete.ml import sklearn as cml

    binary = (Y > 0).astype(int)
    return {
        "LogisticRegression": (cml.LogisticRegression(n_bits=6), Y),
        "LinearSVC": (cml.LinearSVC(n_bits=6), binary),
        "SGDClassifier": (cml.SGDClassifier(n_bits=6), binary),
        "DecisionTreeClassifier": (cml.DecisionTreeClassifier(n_bits=3, max_depth=3), Y),
        "RandomForestClassifier": (cml.RandomForestClassifier(
            n_bits=3, n_estimators=3, max_depth=3), Y),
        "XGBClassifier": (cml.XGBClassifier(n_bits=3, n_estimators=3, max_depth=2), Y),
        "NeuralNetClassifier": (cml.NeuralNetClassifier(
            module__n_layers=2, module__n_w_bits=3, module__n_a_bits=3,
            module__n_accum_bits=8, max_epochs=2, verbose=0), Y),
    }


@pytest.mark.parametrize("family", list(builtins()))
def test_builtin_families_pass(family):
    model, target = builtins()[family]
    model.fit(X, target)
    model.compile(X[:30])
    shape = check_mlir(model.fhe_circuit.mlir)
    assert shape.n_inputs == 1 and shape.n_outputs == 1


class SupportedOps(torch.nn.Module):
    """Convolution, batch norm, pooling, activations with and without table lookups."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3)
        self.norm = torch.nn.BatchNorm2d(2)
        self.pool = torch.nn.MaxPool2d(2)
        self.average = torch.nn.AvgPool2d(1)
        self.dense = torch.nn.Linear(2 * 3 * 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.average(self.pool(torch.relu(self.norm(self.conv(x)))))
        x = torch.sigmoid(x) + torch.tanh(x)
        return self.dense(x.flatten(1))


@pytest.mark.parametrize(("n_bits", "rounding"), [
    (4, None),
    (4, 6),
    ({"model_inputs": 6, "op_inputs": 3, "op_weights": 3, "model_outputs": 6},
     {"n_bits": 5, "method": "APPROXIMATE"}),
])
def test_torch_modules_pass(n_bits, rounding):
    from concrete.ml.torch.compile import compile_torch_model

    torch.manual_seed(0)
    inputs = np.random.default_rng(0).random((40, 1, 8, 8)).astype(np.float32)
    module = compile_torch_model(SupportedOps().eval(), inputs, n_bits=n_bits,
                                 rounding_threshold_bits=rounding)
    shape = check_mlir(module.fhe_circuit.mlir)
    assert shape.n_inputs == 1 and "FHELinalg.maxpool2d" in shape.op_counts
