"""The one Concrete module a package may hold instead of a single function, and its wiring.

A sealed audit's total (issue 22) is a module of three functions sharing one keyset: ``count``
(a batch's counters), ``add`` (two totals into one) and ``noise`` (a clear integer the server
alone knows added to a total). How they may be chained (the composition rules) changes the
crypto parameters the compiler picks, so every compile of the module (vetting, the evaluation
child, :class:`~fhe_backend.untrusted.circuit.FHECircuit`, the simulator) must pass the same
rules, or its keys and client specs differ from the owner's. The rules come from this registry,
never from the package: a ``composition_rules.json`` in a ``server.zip`` is compared with ours
and the package refused if it says anything else (:func:`check_declared`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ArtifactError

# A port of a function's boundary: (function, "in" or "out", position).
Port = tuple[str, str, int]


@dataclass(frozen=True)
class Module:
    """A set of functions the allow-list accepts together, and how outputs feed inputs."""

    arity: dict[str, int]  # every function and its number of inputs (each has one output)
    # (from function, output position, to function, input position): Concrete's fhe.Wired.
    wires: tuple[tuple[str, int, str, int], ...]
    # Each function's one clear input (a tensor of plain integers): the position, and the
    # encrypted input whose shape it must have.
    clear: dict[str, tuple[int, int]]
    # Ports that carry the same value (the run's counters) and so must have one and the same
    # type: every wire's two ends, and outputs nothing is wired from (what is decrypted).
    counters: frozenset[Port]

    @property
    def functions(self) -> frozenset[str]:
        return frozenset(self.arity)

    def declared(self) -> frozenset[tuple[str, int, str, int]]:
        return frozenset(self.wires)


SEALED_TOTAL = Module(
    arity={"count": 2, "add": 2, "noise": 2},
    wires=(
        ("count", 0, "add", 0), ("count", 0, "add", 1),
        ("add", 0, "add", 0), ("add", 0, "add", 1),
        ("count", 0, "noise", 0), ("add", 0, "noise", 0),
    ),
    clear={"noise": (1, 0)},
    counters=frozenset({("count", "out", 0), ("add", "in", 0), ("add", "in", 1),
                        ("add", "out", 0), ("noise", "in", 0), ("noise", "out", 0)}),
)
# The registry: the function sets that may form a module. Any other set of several functions
# is refused by the allow-list.
MODULES: dict[frozenset[str], Module] = {SEALED_TOTAL.functions: SEALED_TOTAL}


def module_of(functions: Iterable[str]) -> Module | None:
    """The registered module made of exactly these functions; None for any other set."""
    names = list(functions)
    module = MODULES.get(frozenset(names))
    return module if module is not None and len(names) == len(module.arity) else None


def concrete_rules(functions: Iterable[str]) -> list[Any] | None:
    """Concrete's composition rules for a circuit of these functions (None: a single function),
    for ``fhe.Server.create(..., composition_rules=...)``."""
    module = module_of(functions)
    if module is None:
        return None
    from concrete.fhe.compilation.composition import CompositionClause, CompositionRule

    return [CompositionRule(CompositionClause(a, i), CompositionClause(b, j))
            for a, i, b, j in module.wires]


def check_declared(raw: bytes, functions: Iterable[str]) -> None:
    """Refuse a ``composition_rules.json`` that differs from the registry's rules for the
    circuit's functions (``null`` for a single function, as Concrete writes it)."""
    module = module_of(functions)
    ours = module.declared() if module is not None else frozenset()
    try:
        data = json.loads(raw)
        theirs = frozenset() if data is None else frozenset(
            (str(a), int(i), str(b), int(j)) for (a, i), (b, j) in data)
    except (ValueError, TypeError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise ArtifactError("server.zip has an unreadable composition_rules.json.") from exc
    if theirs != ours:
        raise ArtifactError("server.zip's composition_rules.json wires its functions other "
                            "than the audit's own rules for this circuit; the package is "
                            "refused.")
