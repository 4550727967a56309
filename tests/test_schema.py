"""The declarative input schema: preprocessing as data, and one-sentence data errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fhe_backend.errors import ArtifactError, SchemaError
from fhe_backend.formats.schema import InputSchema, numeric_schema, standardized_schema

FRAME = pd.DataFrame({"age": [20, 40, 60], "sex": ["Male", "Female", "Male"], "n": [1, 2, 3]})


def schema() -> InputSchema:
    return standardized_schema(FRAME, {"sex": ["Female", "Male"]})


def test_transform_standardizes_and_one_hot_encodes():
    X = schema().transform(FRAME)
    assert schema().feature_names == ["age", "sex=Female", "sex=Male", "n"]
    assert X.shape == (3, 4)
    np.testing.assert_allclose(X[:, 0], (FRAME.age - FRAME.age.mean()) / FRAME.age.std(ddof=0))
    np.testing.assert_array_equal(X[:, 1:3], [[0, 1], [1, 0], [0, 1]])


def test_round_trip_through_the_manifest_dict():
    restored = InputSchema.from_dict(schema().to_dict())
    assert restored == schema()
    np.testing.assert_array_equal(restored.transform(FRAME), schema().transform(FRAME))


def test_input_shape_reshapes_samples():
    s = numeric_schema([f"p{i}" for i in range(4)], (1, 2, 2))
    frame = pd.DataFrame(np.arange(8).reshape(2, 4), columns=[f"p{i}" for i in range(4)])
    assert s.transform(frame).shape == (2, 1, 2, 2)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (FRAME.drop(columns=["sex"]), "lacks column.*sex"),
        (FRAME.assign(age=["20", "forty", "60"]),
         "'age' has missing or non-numeric values in rows 1"),
        (FRAME.assign(n=[1, np.nan, 3]), "'n' has missing or non-numeric values in rows 1"),
        (FRAME.assign(sex=["Male", "Other", "?"]), r"'sex' has categories the model does not know "
                                                   r"\(\?, Other\) in rows 1, 2"),
    ],
)
def test_bad_data_is_named_by_column_and_rows(frame, message):
    with pytest.raises(SchemaError, match=message):
        schema().transform(frame)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["preprocessing"].append({"op": "standardize", "column": "nope"}),
         "unknown column 'nope'"),
        (lambda d: d["preprocessing"][0].update(scale=0), "zero scale"),
        (lambda d: d["columns"][1].update(categories=[]), "lists no categories"),
        (lambda d: d.update(input_shape=[5]), "does not hold 4 features"),
        (lambda d: d["columns"].append(d["columns"][0]), "lists a column twice"),
    ],
)
def test_malformed_schema_is_refused(edit, message):
    data = schema().to_dict()
    edit(data)
    with pytest.raises(ArtifactError, match=message):
        InputSchema.from_dict(data)


def test_labels_outside_the_classes(fast_benchmark):
    with pytest.raises(SchemaError, match="labels outside the model's classes"):
        fast_benchmark.labels(["yes", "no"])
