"""Lazy re-exports for the role folders' ``__init__`` (PEP 562), as ``audits/`` and
huggingface_hub do: ``from fhe_backend.owner import package_model`` works, yet importing one
module of a folder does not load its siblings (Concrete, pandas), so ``--help`` stays instant and
no folder's ``__init__`` can close an import cycle."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def attach(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``package.<module>`` on first use of a name.
    ``exports`` maps each public name to the module (relative to ``package``) defining it."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
