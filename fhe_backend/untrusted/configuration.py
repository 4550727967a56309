"""Concrete's ``configuration.json`` from a ``server.zip``, decoded without running its code.

Concrete decodes it with ``jsonpickle``, which can instantiate any importable class: every
jsonpickle tag that is not one of Concrete's own configuration enums is refused first, options
that would write files or print internals are forced off, and the security level is pinned at
128 bits. Used by :mod:`fhe_backend.untrusted.circuit` and by the sandbox's child.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import ArtifactError

# Configuration fields that are classes in concrete-python 2.10; nothing else may carry a tag.
_ALLOWED_TYPES = {
    "concrete.fhe.compilation.configuration.ParameterSelectionStrategy",
    "concrete.fhe.compilation.configuration.MultiParameterStrategy",
    "concrete.fhe.compilation.configuration.Exactness",
    "concrete.fhe.compilation.configuration.ApproximateRoundingConfig",
    "concrete.fhe.compilation.configuration.SecurityLevel",
    "concrete.fhe.compilation.configuration.ComparisonStrategy",
    "concrete.fhe.compilation.configuration.BitwiseStrategy",
    "concrete.fhe.compilation.configuration.MultivariateStrategy",
    "concrete.fhe.compilation.configuration.MinMaxStrategy",
}
_TAGS_WITH_TYPES = {"py/type", "py/object"}
_HARMLESS_TAGS = {"py/reduce", "py/tuple", "py/id"}
# Options that would make loading write files or print internals; never taken from a zip.
_FORCED = {
    "use_insecure_key_cache": False,
    "insecure_key_cache_location": None,
    "dump_artifacts_on_unexpected_failures": False,
    "verbose": False,
    "show_mlir": False,
    "show_graph": None,
    "show_progress": False,
    "show_statistics": None,
    "show_optimizer": None,
    "compiler_debug_mode": False,
    "compiler_verbose_mode": False,
    "additional_pre_processors": [],
    "additional_post_processors": [],
}


def _check_tags(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key.startswith("py/"):
                if key in _TAGS_WITH_TYPES:
                    if value not in _ALLOWED_TYPES:
                        raise ArtifactError(
                            f"server.zip configuration names a disallowed type {value!r}."
                        )
                elif key not in _HARMLESS_TAGS:
                    raise ArtifactError(f"server.zip configuration uses a disallowed tag {key!r}.")
            _check_tags(value)
    elif isinstance(node, list):
        for item in node:
            _check_tags(item)


def load_configuration(raw: bytes) -> Any:
    """Decode a Concrete configuration.json without letting it name arbitrary classes."""
    import jsonpickle
    from concrete import fhe
    from concrete.fhe.compilation.configuration import SecurityLevel

    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ArtifactError("server.zip configuration.json is not an object.")
        _check_tags(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as exc:
        raise ArtifactError("server.zip has an unreadable configuration.json.") from exc
    known = set(fhe.Configuration().__dict__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ArtifactError(f"server.zip configuration has unknown options: {', '.join(unknown)}.")
    try:
        options = jsonpickle.loads(raw.decode("utf-8"))
    except (TypeError, ValueError, AttributeError, LookupError) as exc:
        # An allowed type with arguments it refuses (py/reduce of an enum with an unknown value).
        raise ArtifactError(f"server.zip configuration cannot be decoded ({exc}).") from exc
    options.update(_FORCED)
    # The owner chooses correctness (p_error), never security: keys and encryption parameters
    # are always those of 128-bit security, whatever the configuration says.
    options["security_level"] = SecurityLevel.SECURITY_128_BITS
    options["enable_unsafe_features"] = False
    try:
        return fhe.Configuration().fork(**options)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"server.zip configuration is invalid ({exc}).") from exc
