"""Model packages are byte-reproducible: the owner rewrites Concrete ML's zips canonically, so the
same model gives the same fingerprint whenever and wherever its package is written."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

from fhe_backend.formats.artifacts import model_fingerprint
from fhe_backend.owner.package import PACKAGE_ZIPS, ZIP_TIME, canonical_zip, make_reproducible

REPO = Path(__file__).resolve().parents[2]


def skops_schema(client_zip: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(client_zip)) as archive:
        processing = json.loads(archive.read("serialized_processing.json"))
    node = bytes.fromhex(processing["model_type"]["serialized_value"])
    with zipfile.ZipFile(io.BytesIO(node)) as archive:
        return json.loads(archive.read("schema.json"))


def restamped(data: bytes, when: tuple[int, ...], object_id: int) -> bytes:
    """The zip as another build would write it: other times, other member order, and the skops
    type node's id another object's."""
    def member(name: str, content: bytes) -> bytes:
        if name != "serialized_processing.json":
            return content
        text = content.decode()
        processing = json.loads(text)
        old = processing["model_type"]["serialized_value"]
        node = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(bytes.fromhex(old))) as source, \
                zipfile.ZipFile(node, "w") as target:
            schema = json.loads(source.read("schema.json"))
            schema["__id__"] = object_id
            target.writestr(zipfile.ZipInfo("schema.json", when), json.dumps(schema, indent=2))
        return text.replace(old, node.getvalue().hex()).encode()

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in reversed(source.infolist()):
            copy = zipfile.ZipInfo(info.filename, when)
            copy.compress_type, copy.external_attr = info.compress_type, 0o600 << 16
            target.writestr(copy, member(info.filename, source.read(info)))
    return out.getvalue()


def test_two_builds_of_one_model_get_one_fingerprint(tmp_path):
    source = REPO / "assets" / "models" / "breast-cancer-logreg"
    builds = []
    for i, (when, object_id) in enumerate((((2026, 11, 27, 9, 3, 0), 94817415016528),
                                           ((2030, 1, 2, 3, 4, 6), 140230913408)), 1):
        build = tmp_path / f"build{i}"
        build.mkdir()
        for name in PACKAGE_ZIPS:
            (build / name).write_bytes(restamped((source / name).read_bytes(), when, object_id))
        builds.append(build)
    assert (builds[0] / "client.zip").read_bytes() != (builds[1] / "client.zip").read_bytes()
    for build in builds:
        make_reproducible(build)
    assert model_fingerprint(builds[0]) == model_fingerprint(builds[1])
    with zipfile.ZipFile(builds[0] / "client.zip") as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {ZIP_TIME}
    assert {i.external_attr >> 16 for i in infos} == {0o644}
    assert skops_schema((builds[0] / "client.zip").read_bytes())["__id__"] == 1


def test_canonical_ids_keep_every_tie():
    """skops ties repeated references by id: equal ids stay equal, distinct stay distinct."""
    schema = {"__id__": 9001, "content": [{"__id__": 77}, {"__id__": 9001}, {"__id__": 5}]}
    node = io.BytesIO()
    with zipfile.ZipFile(node, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema, indent=2))
    from fhe_backend.owner.package import _number_ids

    with zipfile.ZipFile(io.BytesIO(canonical_zip(node.getvalue(), _number_ids))) as archive:
        numbered = json.loads(archive.read("schema.json"))
    assert numbered == {"__id__": 1, "content": [{"__id__": 2}, {"__id__": 1}, {"__id__": 3}]}


def test_a_canonical_client_zip_still_loads_in_concrete_ml(tmp_path):
    from concrete.ml.deployment import FHEModelClient

    package = shutil.copytree(REPO / "assets" / "models" / "breast-cancer-logreg",
                              tmp_path / "package")
    for name in PACKAGE_ZIPS:
        (package / name).write_bytes(restamped((package / name).read_bytes(),
                                               (2030, 1, 2, 3, 4, 6), 140230913408))
    make_reproducible(package)
    client = FHEModelClient(str(package), key_dir=str(tmp_path / "keys"))
    assert type(client.model).__name__ == "LogisticRegression"


def test_manifest_time_follows_source_date_epoch(tmp_path, monkeypatch):
    """Two writes of one package's manifest are byte-identical under $SOURCE_DATE_EPOCH (what
    `make assets` sets); without it the manifest says when it was written."""
    from fhe_backend.formats.artifacts import MANIFEST, ModelPackage, write_model_manifest

    source = ModelPackage.load(REPO / "assets" / "models" / "breast-cancer-logreg")
    fields = {k: getattr(source.manifest, k) for k in source.manifest.__dataclass_fields__
              if k not in ("task", "versions", "files", "fingerprint", "created_at")}
    written = []
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764374400")
    for i in (1, 2):
        build = tmp_path / f"build{i}"
        shutil.copytree(source.path, build)
        (build / MANIFEST).unlink()
        package = write_model_manifest(build, **fields)
        written.append((build / MANIFEST).read_bytes())
    assert written[0] == written[1]
    assert package.manifest.created_at == "2025-11-29T00:00:00+00:00"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "not a time")
    assert write_model_manifest(build, **fields).manifest.created_at.startswith("20")
