"""A model's input schema and client-side preprocessing, declared as data.

The model owner publishes, in the package manifest, which raw columns the model expects and how
the auditor turns them into the model's numeric input (standardize, one-hot, ordinal codes,
clipping). The auditor applies those steps before encryption. Nothing here is ever code from the
artifact: the steps are a closed set of operations with numeric parameters, so a hostile manifest
can at worst produce wrong numbers, never run anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ArtifactError, SchemaError

COLUMN_TYPES = ("numeric", "categorical")
# A number further outside the range the model was calibrated on (its declared clip, or its
# input quantizer's range) than this many times that range's width is refused, not clipped:
# a value like 1e300 is a data error, and clipping would encrypt a made-up number instead.
RANGE_FACTOR = 10.0
STEP_OPS = ("passthrough", "standardize", "one_hot", "ordinal")


@dataclass(frozen=True)
class Column:
    """One raw input column as the auditor's data holds it."""

    name: str
    type: str = "numeric"
    categories: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.categories:
            out["categories"] = list(self.categories)
        return out


@dataclass(frozen=True)
class Step:
    """One preprocessing step; it reads one raw column and yields one or more model features.

    - ``passthrough``: the value as a float.
    - ``standardize``: ``(x - mean) / scale``.
    - ``one_hot``: one 0/1 feature per category, in the listed order.
    - ``ordinal``: the index of the value in ``categories``.
    ``clip`` (optional ``[low, high]``) bounds the result of passthrough/standardize.
    """

    op: str
    column: str
    mean: float = 0.0
    scale: float = 1.0
    categories: tuple[str, ...] = ()
    clip: tuple[float, float] | None = None

    def feature_names(self) -> list[str]:
        if self.op == "one_hot":
            return [f"{self.column}={c}" for c in self.categories]
        return [self.column]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "column": self.column}
        if self.op == "standardize":
            out.update(mean=self.mean, scale=self.scale)
        if self.op in ("one_hot", "ordinal"):
            out["categories"] = list(self.categories)
        if self.clip is not None:
            out["clip"] = list(self.clip)
        return out


@dataclass(frozen=True)
class InputSchema:
    """Raw columns, preprocessing steps and the per-sample input shape of the circuit."""

    columns: tuple[Column, ...]
    steps: tuple[Step, ...]
    input_shape: tuple[int, ...] = field(default=())

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def feature_names(self) -> list[str]:
        return [name for step in self.steps for name in step.feature_names()]

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": [c.to_dict() for c in self.columns],
            "preprocessing": [s.to_dict() for s in self.steps],
            "input_shape": list(self.input_shape),
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_dict(cls, data: Any) -> InputSchema:
        """Parse and validate a schema read from an (untrusted) manifest."""
        try:
            columns = tuple(
                Column(
                    name=str(c["name"]),
                    type=str(c.get("type", "numeric")),
                    categories=tuple(str(v) for v in c.get("categories", ())),
                )
                for c in data["columns"]
            )
            steps = tuple(
                Step(
                    op=str(s["op"]),
                    column=str(s["column"]),
                    mean=float(s.get("mean", 0.0)),
                    scale=float(s.get("scale", 1.0)),
                    categories=tuple(str(v) for v in s.get("categories", ())),
                    clip=_parse_clip(s.get("clip")),
                )
                for s in data["preprocessing"]
            )
            shape = tuple(int(d) for d in data.get("input_shape", ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"The input schema is malformed ({exc!s}).") from exc
        schema = cls(columns=columns, steps=steps, input_shape=shape)
        schema.check()
        return schema

    def check(self) -> None:
        """Refuse schemas that cannot be applied."""
        names = self.column_names
        if len(set(names)) != len(names):
            raise ArtifactError("The input schema lists a column twice.")
        by_name = {c.name: c for c in self.columns}
        for col in self.columns:
            if col.type not in COLUMN_TYPES:
                raise ArtifactError(f"Column {col.name!r} has unknown type {col.type!r}.")
            if col.type == "categorical" and not col.categories:
                raise ArtifactError(f"Categorical column {col.name!r} lists no categories.")
        for step in self.steps:
            if step.op not in STEP_OPS:
                raise ArtifactError(f"Unknown preprocessing op {step.op!r}.")
            if step.column not in by_name:
                raise ArtifactError(f"Preprocessing step reads unknown column {step.column!r}.")
            categorical = step.op in ("one_hot", "ordinal")
            if categorical != (by_name[step.column].type == "categorical"):
                raise ArtifactError(
                    f"Step {step.op!r} does not fit the type of column {step.column!r}."
                )
            if categorical and not step.categories:
                raise ArtifactError(f"Step {step.op!r} on {step.column!r} lists no categories.")
            if step.op == "standardize" and not (np.isfinite(step.scale) and step.scale != 0):
                raise ArtifactError(f"Step standardize on {step.column!r} has a zero scale.")
        if self.input_shape and int(np.prod(self.input_shape)) != self.n_features:
            raise ArtifactError(
                f"Input shape {list(self.input_shape)} does not hold {self.n_features} features."
            )

    def validate_frame(self, frame: pd.DataFrame) -> None:
        """Check plaintext data against the schema; one sentence naming column and rows."""
        missing = [n for n in self.column_names if n not in frame.columns]
        if missing:
            raise SchemaError(f"The data lacks column(s) the model needs: {', '.join(missing)}.")
        for col in self.columns:
            values = frame[col.name]
            if col.type == "numeric":
                _check_numbers(col.name, values)
            else:
                known = set(col.categories)
                bad = values.index[~values.astype(str).isin(known) | values.isna()]
                if len(bad):
                    sample = sorted({str(v) for v in values.loc[bad]})[:3]
                    raise SchemaError(
                        f"Column {col.name!r} has categories the model does not know "
                        f"({', '.join(sample)}) in rows {_rows(bad)}."
                    )

        for step in self.steps:
            if step.clip is not None:
                low, high = step.clip
                x = self._scaled(step, frame[step.column])
                check_range(x[:, None], low, high, [step.column], "its declared clip",
                            frame.index)

    @staticmethod
    def _scaled(step: Step, values: pd.Series) -> np.ndarray:
        x = pd.to_numeric(values).to_numpy(dtype=np.float64)
        return (x - step.mean) / step.scale if step.op == "standardize" else x

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Apply the declared preprocessing; returns float64 of shape (n, *input_shape)."""
        self.validate_frame(frame)
        parts: list[np.ndarray] = []
        for step in self.steps:
            values = frame[step.column]
            if step.op in ("passthrough", "standardize"):
                x = self._scaled(step, values)
                if step.clip is not None:
                    x = np.clip(x, *step.clip)
                parts.append(x[:, None])
            else:
                codes = pd.Categorical(values.astype(str), categories=list(step.categories)).codes
                if step.op == "one_hot":
                    parts.append(np.eye(len(step.categories))[codes])
                else:
                    parts.append(codes.astype(np.float64)[:, None])
        matrix = np.concatenate(parts, axis=1) if parts else np.zeros((len(frame), 0))
        shape = self.input_shape or (matrix.shape[1],)
        return matrix.reshape((len(frame), *shape))


def _check_numbers(name: str, values: pd.Series) -> None:
    """Numbers only: no gaps, no text, no infinity, no booleans (never taken as 0 and 1)."""
    flags = values.map(lambda v: isinstance(v, bool | np.bool_))
    bad = values.index[flags.to_numpy(dtype=bool)]
    if len(bad):
        raise SchemaError(f"Column {name!r} holds true/false values, not numbers, in rows "
                          f"{_rows(bad)}.")
    numeric = pd.to_numeric(values, errors="coerce")
    bad = values.index[numeric.isna()]
    if len(bad):
        raise SchemaError(
            f"Column {name!r} has missing or non-numeric values in rows {_rows(bad)}."
        )
    bad = values.index[~np.isfinite(numeric.to_numpy(dtype=np.float64))]
    if len(bad):
        raise SchemaError(f"Column {name!r} has infinite values in rows {_rows(bad)}.")


def check_range(matrix: np.ndarray, low: float, high: float, names: list[str],
                what: str, index: pd.Index | None = None) -> None:
    """Refuse values further outside ``[low, high]`` than :data:`RANGE_FACTOR` times its
    width; ``matrix`` is (rows, features), ``names`` name its features and ``index`` its rows."""
    margin = RANGE_FACTOR * max(high - low, 1e-12)
    matrix = np.asarray(matrix, dtype=np.float64).reshape(len(matrix), -1)
    outside = (matrix < low - margin) | (matrix > high + margin)
    if outside.any():
        rows, features = np.nonzero(outside)
        feature = names[features[0]] if len(names) == matrix.shape[1] else f"#{features[0]}"
        hit = pd.Index(sorted(set(rows[features == features[0]].tolist())))
        if index is not None:
            hit = index[hit]
        raise SchemaError(
            f"Column {feature!r} has values far outside the range the model was calibrated on "
            f"({what}, [{low:.4g}, {high:.4g}]) in rows {_rows(hit)}; they are refused rather "
            "than clipped."
        )


def _parse_clip(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    low, high = (float(v) for v in value)
    return (low, high)


def _rows(index: pd.Index, limit: int = 5) -> str:
    shown = ", ".join(str(i) for i in list(index[:limit]))
    return shown + (f" and {len(index) - limit} more" if len(index) > limit else "")


def numeric_schema(names: list[str], input_shape: tuple[int, ...] = ()) -> InputSchema:
    """A schema of numeric columns passed through as they are (digits, breast cancer raw)."""
    return InputSchema(
        columns=tuple(Column(n) for n in names),
        steps=tuple(Step("passthrough", n) for n in names),
        input_shape=input_shape,
    )


def standardized_schema(frame: pd.DataFrame, categorical: dict[str, list[str]]) -> InputSchema:
    """Fit a schema on training data: standardize numeric columns, one-hot categorical ones."""
    columns: list[Column] = []
    steps: list[Step] = []
    for name in frame.columns:
        if name in categorical:
            cats = tuple(categorical[name])
            columns.append(Column(name, "categorical", cats))
            steps.append(Step("one_hot", name, categories=cats))
        else:
            x = pd.to_numeric(frame[name]).to_numpy(dtype=np.float64)
            scale = float(x.std()) or 1.0
            columns.append(Column(name))
            steps.append(Step("standardize", name, mean=float(x.mean()), scale=scale))
    return InputSchema(columns=tuple(columns), steps=tuple(steps))

