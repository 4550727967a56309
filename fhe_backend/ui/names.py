"""Feature names as a reader knows them: image pixels by (row, column), coded categories by
their documented meaning (the German credit data's A11…A202, from ``assets/data``)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from functools import lru_cache

from ..errors import AuditError
from ..hub.references import resolve_model
from ..hub.zoo import assets_dir, model_ids
from . import texts

PIXEL = re.compile(r"pixel_(\d+)")
# Code -> meaning tables per column, vendored beside the data sets they document.
CODE_TABLES = ("german-codes.json",)


@lru_cache(maxsize=1)
def code_meanings() -> dict[str, dict[str, str]]:
    """{column: {code: meaning}} of every vendored code table (none when absent)."""
    meanings: dict[str, dict[str, str]] = {}
    for name in CODE_TABLES:
        path = assets_dir() / "data" / name
        if path.is_file():
            for column, codes in json.loads(path.read_text(encoding="utf-8"))["columns"].items():
                meanings.setdefault(column, {}).update(codes)
    return meanings


def pixel_side(names: list[str]) -> int | None:
    """The side of the square image whose pixels ``names`` are (pixel_0 … pixel_63), if so.
    Some pixels may be missing (a surrogate names only those it uses): the side is the
    smallest square that holds the largest index."""
    found = [PIXEL.fullmatch(n) for n in names]
    if not names or not all(found):
        return None
    return math.isqrt(max(int(m.group(1)) for m in found if m)) + 1


def category(column: str, code: str) -> str:
    """A category as a reader knows it: its documented meaning (and code), else as it is."""
    meaning = code_meanings().get(column, {}).get(code)
    return texts.CODED_CATEGORY.format(meaning=meaning, code=code) if meaning else code


def namer(names: list[str]) -> Callable[[str], str]:
    """Names for readings and figures: pixels by (row, column) when ``names`` are an image's,
    one-hot features ``column=code`` by the code's meaning, others as they are."""
    side = pixel_side(names)

    def name(feature: str) -> str:
        if side is not None and PIXEL.fullmatch(feature):
            row, col = divmod(int(feature.removeprefix("pixel_")), side)
            return texts.PIXEL_NAME.format(row=row, col=col)
        column, sep, code = feature.partition("=")
        if sep and code in code_meanings().get(column, {}):
            return f"{column}: {category(column, code)}"
        return feature

    return name


def model_features(model_id: str) -> list[str]:
    """The zoo model's feature names (one per one-hot category); none for another model."""
    if model_id not in model_ids():
        return []
    try:
        return resolve_model(model_id).manifest.input_schema.feature_names
    except AuditError:
        return []
