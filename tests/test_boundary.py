"""The trust boundary holds by construction: only ``fhe_backend/untrusted/`` opens a zip, parses
MLIR, decodes ``configuration.json`` or reads an evaluation-key file a hostile party may have
written. Everything else gets those bytes through the boundary's functions, already checked.

A few modules outside it touch the same libraries on bytes they made themselves; each is named
below with the reason, so a new one is a decision, not an accident."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "fhe_backend"
BOUNDARY = "fhe_backend/untrusted/"

# library (an import of it or of anything below it) -> modules outside the boundary allowed to
# import it, and why
LIBRARIES: dict[str, dict[str, str]] = {
    "zipfile": {
        "fhe_backend/owner/package.py": "rewrites the zips the owner just compiled, canonically",
        "fhe_backend/sealed/circuit.py": "writes the sealed zips as the owner builds them",
    },
    "jsonpickle": {},  # configuration.json: only untrusted/configuration.py decodes it
    "capnp": {},  # evaluation keys: only untrusted/keyset.py parses them
    "mlir": {},  # the MLIR parser: only untrusted/mlir_policy.py
    "concrete.lang": {},
    "concrete.ml.deployment": {
        "fhe_backend/owner/package.py": "FHEModelDev saves the owner's own compiled model",
        "fhe_backend/latency.py": "stock FHEModelServer, on a circuit the boundary vetted first, "
                                  "for the latency comparison",
    },
}
# Concrete's loaders of a server: Server.create parses MLIR, Server.load unpacks a zip and
# decodes configuration.json with jsonpickle.
SERVER_LOADERS = {"create", "load"}
# Reading an encrypted benchmark's evaluation-key file: the auditor reads its own keys (in its
# key directory, which nobody else writes); anything else goes through untrusted/.
KEY_FILES = {"EVALUATION_KEYS", "evaluation_keys_path"}
KEY_FILE_READERS = {"fhe_backend/auditor/": "the auditor's own key directory"}


def _imports(tree: ast.AST) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found += [(node.module, node.lineno)]
            found += [(f"{node.module}.{a.name}", node.lineno) for a in node.names]
    return found


def _server_loads(tree: ast.AST) -> list[int]:
    """Lines calling ``<...>Server.create(...)`` or ``<...>Server.load(...)``."""
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in SERVER_LOADERS):
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name == "Server":
                lines.append(node.lineno)
    return lines


def _key_file_reads(tree: ast.AST) -> list[int]:
    """Lines that read (``read_bytes``, ``open``) a path built from the evaluation-key name."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in {"read_bytes", "open"}:
            names = {n.id for n in ast.walk(node.func.value) if isinstance(n, ast.Name)} | {
                n.attr for n in ast.walk(node.func.value) if isinstance(n, ast.Attribute)}
            if names & KEY_FILES:
                lines.append(node.lineno)
    return lines


def violations(rel: str, source: str) -> list[str]:
    """What ``rel`` (a path below the repository) does that only the boundary may do."""
    if rel.startswith(BOUNDARY):
        return []
    tree = ast.parse(source)
    found = sorted({f"{rel}:{line} imports {library}" for name, line in _imports(tree)
                    for library, allowed in LIBRARIES.items()
                    if (name == library or name.startswith(library + ".")) and rel not in allowed})
    found += [f"{rel}:{line} loads a Concrete server" for line in _server_loads(tree)]
    if not rel.startswith(tuple(KEY_FILE_READERS)):
        found += [f"{rel}:{line} reads an evaluation-key file" for line in _key_file_reads(tree)]
    return found


def test_only_the_boundary_reads_untrusted_bytes():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        found += violations(rel, path.read_text())
    assert not found, "\n".join(found)


def test_every_named_exception_still_exists():
    """An exception for a module that no longer needs it is removed, not kept as a hole."""
    for library, allowed in LIBRARIES.items():
        for rel in allowed:
            names = [n for n, _ in _imports(ast.parse((REPO / rel).read_text()))]
            assert any(n == library or n.startswith(library + ".") for n in names), (library, rel)


@pytest.mark.parametrize("source, what", [
    ("import zipfile\n", "imports zipfile"),
    ("def f():\n    from jsonpickle import loads\n", "imports jsonpickle"),
    ("from concrete.lang import register_dialects\n", "imports concrete.lang"),
    ("from concrete import fhe\nfhe.Server.load('server.zip')\n", "loads a Concrete server"),
    ("from concrete import fhe\nfhe.Server.create(text, config)\n", "loads a Concrete server"),
    ("x = (folder / EVALUATION_KEYS).read_bytes()\n", "reads an evaluation-key file"),
    ("x = self.evaluation_keys_path.read_bytes()\n", "reads an evaluation-key file"),
])
def test_the_rule_sees_each_kind_of_read(source, what):
    (found,) = violations("fhe_backend/server/run.py", source)
    assert what in found
    assert violations("fhe_backend/untrusted/anything.py", source) == []
