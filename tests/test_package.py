"""The package's shape: pins equal to requirements.txt, one entry point, one settings module,
one atomic writer, no import cycle, and the zoo found both in a checkout and in a wheel."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from fhe_backend import settings
from fhe_backend.hub import zoo

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "fhe_backend"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def requirement_lines(name: str) -> list[str]:
    lines = (REPO / name).read_text().splitlines()
    pins = (line.split("#")[0].strip() for line in lines)
    return [pin for pin in pins if pin and not pin.startswith("-r")]


def test_pyproject_pins_what_requirements_txt_pins():
    extras = PYPROJECT["optional-dependencies"]
    # requirements.txt (the Space installs it) is the runtime plus the cluster extra.
    assert sorted(PYPROJECT["dependencies"] + extras["dask"]) == sorted(
        requirement_lines("requirements.txt"))
    assert all("==" in pin for pin in PYPROJECT["dependencies"] + extras["dask"])
    assert sorted(d for d in extras["dev"] if not d.startswith("fhe-audit[")) == sorted(
        requirement_lines("requirements-dev.txt"))
    assert "fhe-audit[dask]" in extras["dev"]


def test_console_script_calls_what_python_m_calls():
    """Same function, so `fhe-audit` exits as `python -m fhe_backend` does."""
    main = ast.parse((PACKAGE / "__main__.py").read_text())
    defined = {n.name for n in main.body if isinstance(n, ast.FunctionDef)}
    (guard,) = [n for n in main.body if isinstance(n, ast.If)]  # if __name__ == "__main__":
    called = {n.func.id for n in ast.walk(guard)
              if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    module, function = PYPROJECT["scripts"]["fhe-audit"].split(":")
    assert module == "fhe_backend.__main__" and function in defined & called, (defined, called)


def import_graph() -> dict[str, set[str]]:
    """Module -> the fhe_backend modules it imports, at any depth of the code (function-level
    imports included: a cycle hidden in a function is still a cycle)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = (".".join([*base, node.module] if node.module else base) if node.level
                          else node.module or "")
                found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target
                          for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        # Importing a.b.c runs a/__init__ and a/b/__init__ first: an edge to each parent package
        # (but this module's own, already running), so a cycle closed by a folder's __init__ is
        # seen too.
        found |= {parent for target in set(found) for i in range(2, target.count(".") + 1)
                  if not (name + ".").startswith((parent := ".".join(target.split(".")[:i])) + ".")}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle():
    graph = import_graph()
    assert graph["fhe_backend.cli"] >= {"fhe_backend.hub.references", "fhe_backend.hub.zoo"}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
    assert "fhe_backend.hub.remote" not in graph["fhe_backend.hub.zoo"]


def test_the_cycle_finder_finds_a_function_level_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_fhe_audit_variable_is_declared_once_and_documented():
    declared = {s.name for s in settings.SETTINGS}
    readme = (REPO / "README.md").read_text()
    assert all(name in readme for name in declared), "README's settings table is missing some"
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert set(re.findall(r"FHE_AUDIT_[A-Z_]+", text)) <= declared, path
        if path.name != "settings.py":
            assert not re.search(r"environ[^\n]*FHE_AUDIT_|getenv\([^)]*FHE_AUDIT_", text), path
    for setting in settings.SETTINGS:
        assert setting.meaning and (setting.name.startswith("FHE_AUDIT_")
                                    or setting in settings.STANDARD)


@pytest.mark.parametrize("value, expected", [("7", 7), ("", 200), ("0", 200), ("x", 200)])
def test_a_bad_number_keeps_the_default(monkeypatch, value, expected):
    monkeypatch.setenv(settings.MAX_SAMPLES.name, value)
    assert settings.MAX_SAMPLES.positive_int() == expected


def test_one_atomic_writer():
    for path in PACKAGE.rglob("*.py"):
        if path.name != "atomic.py":
            assert '+ ".tmp"' not in path.read_text(), path


def test_errors_live_in_errors_py():
    """Every error users see (an AuditError) is defined in errors.py; private control-flow
    exceptions may stay where they are raised and caught."""
    errors = ast.parse((PACKAGE / "errors.py").read_text())
    user_errors = {n.name for n in ast.walk(errors) if isinstance(n, ast.ClassDef)}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py":
            continue
        classes = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)]
        for node in classes:
            bases = {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
            assert not bases & user_errors, (path, node.name)


def test_the_zoo_is_found_in_a_checkout_and_in_an_installed_wheel(monkeypatch, tmp_path):
    monkeypatch.delenv(settings.ASSETS.name, raising=False)
    assert zoo.assets_dir() == REPO / "assets" and "breast-cancer-logreg" in zoo.model_ids()
    installed = tmp_path / "site-packages" / "fhe_backend" / "assets"
    installed.mkdir(parents=True)
    monkeypatch.setattr(zoo, "INSTALLED_ASSETS", installed)
    assert zoo.assets_dir() == installed
    monkeypatch.setenv(settings.ASSETS.name, str(tmp_path))
    assert zoo.assets_dir() == tmp_path


def test_readme_code_map_is_the_package_tree():
    """The README's code map names every top-level folder and module of fhe_backend, no more."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Code map", 1)[1].split("\n## ", 1)[0]
    tree_block = section.split("```text\n", 1)[1].split("```", 1)[0]
    # an entry starts two spaces in; deeper lines continue the entry above
    listed = {line.split()[0] for line in tree_block.splitlines()[1:]
              if line.startswith("  ") and not line.startswith("   ")}
    tree = {p.name for p in PACKAGE.glob("*.py") if not p.name.startswith("_")} | {
        f"{p.name}/" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert listed == tree, (sorted(tree - listed), sorted(listed - tree))


def test_every_folder_init_lists_its_modules():
    """Each folder's __init__ docstring names every module in it (the map one level down)."""
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        modules = {p.name for p in init.parent.glob("*.py")
                   if p.name != "__init__.py" and not p.name.startswith("_")}
        missing = {m for m in modules if m not in doc}
        assert not missing, (init, sorted(missing))


def test_readme_fhe_audit_commands_are_real_cli_commands():
    from fhe_backend.cli import build_parser

    used = set(re.findall(r"(?m)^\s*(?:cd \S+ && )?fhe-audit ([a-z][a-z-]*)",
                          (REPO / "README.md").read_text()))
    known = set(build_parser()._subparsers._group_actions[0].choices)
    assert used and used <= known, used - known


def test_references_are_resolved_by_references_py_only():
    """zoo.py only lists assets; a function-level import of a resolver from it would fail late."""
    moved = {"resolve_model", "resolve_benchmark", "resolve_encrypted", "model_by_fingerprint"}
    for path in [*PACKAGE.rglob("*.py"), *(REPO / "tests").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("zoo"):
                assert not {a.name for a in node.names} & moved, (path, node.lineno)
