"""Hostile or broken inputs end in one sentence and status 2, never a traceback (issue 12,
items 4 and 5): deep nesting, huge integers, folders that are files or read-only, a broken
home or registry, a full disk, symlinks to secrets, and numbers that would be clipped."""

from __future__ import annotations

import errno
import json
import os
import pathlib

import numpy as np
import pytest
from support import FAST_BENCHMARK, FAST_MODEL, copy_tree

from fhe_backend import cli
from fhe_backend.errors import ArtifactError, SchemaError
from fhe_backend.formats.artifacts import MANIFEST, ModelPackage, read_json
from fhe_backend.hub.references import resolve_benchmark
from fhe_backend.hub.registry import HOME_ENV
from fhe_backend.server import run as server_module


def run(capfd, *args: object) -> tuple[int, str]:
    code = cli.main([str(a) for a in args])
    return code, capfd.readouterr().err


def one_sentence(code: int, err: str, fragment: str = "") -> str:
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and fragment in last, last
    return last


# -- manifests that exhaust the parser -----------------------------------------------------


def test_manifest_nested_100000_deep(tmp_path, fast_package, capfd):
    package = copy_tree(fast_package.path, tmp_path / "pkg")
    (package / MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ArtifactError, match="nested too deeply"):
        ModelPackage.load(package)
    code, err = run(capfd, "audit", "--model", package, "--benchmark", FAST_BENCHMARK,
                    "--fhe", "simulate", "--limit", "2")
    one_sentence(code, err, "nested too deeply")


def test_manifest_with_an_integer_over_4300_digits(tmp_path, fast_package):
    package = copy_tree(fast_package.path, tmp_path / "pkg")
    manifest = (package / MANIFEST).read_text()
    huge = '"huge": ' + "9" * 5000 + ", "
    (package / MANIFEST).write_text(manifest.replace('"schema_version": ',
                                                     huge + '"schema_version": ', 1))
    with pytest.raises(ArtifactError, match="number too large"):
        read_json(package / MANIFEST, "Model package")


# -- folders -------------------------------------------------------------------------------


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize("argv", [
    ["keygen", "--model", FAST_MODEL, "--keys", "{file}"],
    ["encrypt", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK, "--keys", "{tmp}/k",
     "--out", "{file}", "--limit", "2"],
    ["audit", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK, "--limit", "2",
     "--out", "{file}"],
    ["publish-run", "--run", "{tmp}", "--repo", "o/r", "--dry-run", "--out", "{file}"],
])
def test_out_that_is_an_existing_file(argv, a_file, tmp_path, capfd):
    args = [a.format(file=a_file, tmp=tmp_path) for a in argv]
    code, err = run(capfd, *args)
    one_sentence(code, err, "is a file; give a folder")


def test_read_only_out(tmp_path, monkeypatch, capfd):
    """Root ignores permissions, so the file system's EROFS is simulated where it is raised."""
    blocked = tmp_path / "ro"
    real_mkdir = pathlib.Path.mkdir

    def mkdir(self, *args, **kwargs):
        if str(self).startswith(str(blocked)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    for argv in (["keygen", "--model", FAST_MODEL, "--keys", blocked / "keys"],
                 ["audit", "--model", FAST_MODEL, "--benchmark", FAST_BENCHMARK, "--limit", "2",
                  "--out", blocked / "audit"]):
        code, err = run(capfd, *argv)
        last = one_sentence(code, err, "Read-only file system")
        assert str(blocked) in last


def test_disk_full_while_writing_outputs(tmp_path, audited, monkeypatch, capfd):
    def full(path, rows):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(server_module, "write_ciphertexts", full)
    code, err = run(capfd, "run", "--model", FAST_MODEL, "--encrypted", audited.encrypted.path,
                    "--out", tmp_path / "run")
    one_sentence(code, err, "No space left on device")


# -- home and registry ---------------------------------------------------------------------


def test_audit_home_that_is_a_file(a_file, monkeypatch, capfd, tmp_path):
    table = tmp_path / "t.csv"
    resolve_benchmark(FAST_BENCHMARK).frame.drop(columns=["sample_id"]).to_csv(table, index=False)
    monkeypatch.setenv(HOME_ENV, str(a_file))
    code, err = run(capfd, "register-benchmark", table, "--id", "mine")
    one_sentence(code, err, f"The audit home {a_file} is a file; set {HOME_ENV}")


def test_home_that_cannot_be_created(a_file, monkeypatch, capfd, tmp_path):
    monkeypatch.delenv(HOME_ENV, raising=False)
    monkeypatch.setenv("HOME", str(a_file / "home"))  # below a file: cannot exist
    table = tmp_path / "t.csv"
    resolve_benchmark(FAST_BENCHMARK).frame.drop(columns=["sample_id"]).to_csv(table, index=False)
    code, err = run(capfd, "register-benchmark", table, "--id", "mine")
    one_sentence(code, err, "Cannot use")


@pytest.mark.parametrize(("field", "value"), [("n_samples", None), ("label_column", 5),
                                              ("columns", "abc")])
def test_malformed_registry_entry(field, value, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    table = tmp_path / "t.csv"
    resolve_benchmark(FAST_BENCHMARK).frame.drop(columns=["sample_id"]).to_csv(table, index=False)
    assert run(capfd, "register-benchmark", table, "--id", "mine")[0] == 0
    path = tmp_path / "home" / "benchmarks.json"
    data = json.loads(path.read_text())
    if value is None:
        del data["benchmarks"]["mine"][field]
    else:
        data["benchmarks"]["mine"][field] = value
    path.write_text(json.dumps(data))
    code, err = run(capfd, "benchmarks")
    one_sentence(code, err, f"malformed {field}")


# -- error messages never quote a file's content --------------------------------------------


def test_symlink_to_a_secret_is_not_echoed(tmp_path, capfd):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$s3cr3tsalt$h4sh:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    link = tmp_path / "data.csv"
    link.symlink_to(secret)
    code, err = run(capfd, "audit", "--model", FAST_MODEL, "--benchmark", link,
                    "--fhe", "simulate")
    one_sentence(code, err)
    assert "s3cr3t" not in err and "h4sh" not in err and "daemon" not in err


# -- numbers that would be clipped (item 5) -------------------------------------------------


@pytest.mark.parametrize(("value", "fragment"), [
    (np.inf, "infinite values in rows 3"),
    (-np.inf, "infinite values in rows 3"),
    (np.nan, "missing or non-numeric values in rows 3"),
    (1e300, "far outside the range the model was calibrated on"),
])
def test_bad_numbers_are_refused_not_clipped(value, fragment, tmp_path, capfd):
    frame = resolve_benchmark(FAST_BENCHMARK).frame.head(6).drop(columns=["sample_id"])
    frame.loc[3, "mean area"] = value
    table = tmp_path / "t.csv"
    frame.to_csv(table, index=False)
    keys = tmp_path / "keys"
    for argv in (["encrypt", "--model", FAST_MODEL, "--benchmark", table, "--keys", keys,
                  "--out", tmp_path / "enc"],
                 ["audit", "--model", FAST_MODEL, "--benchmark", table, "--fhe", "simulate"]):
        code, err = run(capfd, *argv)
        last = one_sentence(code, err, fragment)
        assert "'mean area'" in last
    assert not (tmp_path / "enc").exists()


def test_booleans_are_not_numbers(tmp_path, fast_package):
    frame = resolve_benchmark(FAST_BENCHMARK).frame.head(4).copy()
    frame["mean area"] = frame["mean area"].astype(object)
    frame.loc[1, "mean area"] = True
    with pytest.raises(SchemaError, match=r"'mean area' holds true/false values.*rows 1"):
        fast_package.manifest.input_schema.validate_frame(frame)


def test_declared_clip_still_takes_real_outliers_but_refuses_absurd_values():
    """adult-income's owner clips standardized values to [-4, 4]: a capital gain of 99,999
    (z = 13) is real data and is clipped as declared; 1e300 is refused."""
    from fhe_backend.hub.references import resolve_model

    schema = resolve_model("adult-income-mlp").manifest.input_schema
    frame = resolve_benchmark("adult-income-test").frame.head(3).copy()
    frame.loc[0, "capital-gain"] = 99_999
    schema.validate_frame(frame)
    frame.loc[2, "capital-gain"] = 1e300
    with pytest.raises(SchemaError, match=r"'capital-gain' has values far outside.*rows 2"):
        schema.validate_frame(frame)


def test_no_zoo_benchmark_is_refused():
    from fhe_backend.auditor.client import Auditor, DemoKeys
    from fhe_backend.hub.references import resolve_model
    from fhe_backend.hub.zoo import benchmarks_for, model_ids

    for model_id in model_ids():
        package = resolve_model(model_id)
        for bench_id in benchmarks_for(model_id):
            frame = resolve_benchmark(bench_id).frame
            package.manifest.input_schema.validate_frame(frame)
            with DemoKeys() as keys:
                Auditor(package, keys).check_range(frame)


def test_a_multi_line_library_message_is_cut_to_one_line(monkeypatch, capfd):
    """Concrete's deserialization errors run to 26 lines with stack addresses."""
    from fhe_backend.errors import CiphertextError

    def noisy(_args):
        raise CiphertextError("the evaluation keys cannot be deserialized (capnp: bad\n"
                              "  0x7f00 frame 1\n  0x7f01 frame 2)")

    monkeypatch.setattr(cli, "cmd_models", noisy)
    code, err = run(capfd, "models")
    assert code == 2 and err.strip().splitlines() == [
        "error: the evaluation keys cannot be deserialized (capnp: bad"]
