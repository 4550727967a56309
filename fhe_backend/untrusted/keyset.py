"""Cryptographic parameters are the auditor's, never the model owner's or a publisher's.

Two checks on bytes that decide how data is encrypted or evaluated:

* :func:`check_client_specs`: a ``client.zip`` names, for every input, the LWE dimension and
  noise variance of the encryption, and every key's parameters. The auditor derives the specs by
  compiling the (allow-listed) circuit itself at 128-bit security
  (:func:`fhe_backend.untrusted.sandbox.vet`)
  and refuses a package whose ``client.specs.json`` differs in any of them: a variance of 0 or a
  smaller dimension would strip the security from every ciphertext it publishes.
* :func:`check_evaluation_keys`: a published ``evaluation_keys.bin`` made for another circuit
  crashes Concrete's runtime (a Rust panic, then a segfault). Every key it holds is described by
  its own info record; each must be exactly the one the circuit's keyset expects, and its payload
  exactly as long as those parameters make it, before the keys reach the runtime.
* :func:`read_evaluation_keys`: the only reader of an ``evaluation_keys.bin``. The circuit's
  keyset fixes the keys' size to within a few hundred bytes of framing, so a file of any other
  size is refused from its length, before a byte of it is hashed into memory or parsed.

The same specs bound every ciphertext of the circuit (:func:`ciphertext_bytes`): readers of
``ciphertexts.parquet`` and ``outputs.parquet`` refuse any cell larger than that before
decompressing it, and :func:`check_sizes` refuses (at vetting) a circuit whose keys, inputs or
outputs would be too large for any honest audit. A module's specs list one circuit per
function under one keyset: the bounds are those of its largest call.

The evaluation keys are a Cap'n Proto ``ServerKeyset`` (Concrete's protocol); ``keyset.capnp``
beside this module declares just the fields read here, with the protocol's field numbers.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ArtifactError
from .composition import module_of

_SCHEMA = Path(__file__).with_name("keyset.capnp")
_KINDS = {
    "lweBootstrapKeys": "bootstrap key",
    "lweKeyswitchKeys": "keyswitch key",
    "packingKeyswitchKeys": "packing keyswitch key",
}
# The parts of the specs that decide keys and encryption; "tfhers_specs" describes optional
# TFHE-rs interoperability, which the project does not use (every entry must be empty).
_SPECS_PARTS = ("keyset", "circuits")
# A capnp message is read lazily. A list of zero-sized structs costs one word on the wire for
# any element count: 40 bytes could make us walk 2**30 keys. Reading is bounded by a small
# multiple of the message's own size, and each list's length is checked before it is walked.
_TRAVERSAL_SLACK_WORDS = 4096
# Concrete writes a key's payload as one blob (capnp blobs hold up to 512 MiB each).
_MAX_PAYLOAD_BLOBS = 64
# Framing around the keys' payloads in evaluation_keys.bin: the message header, each key's info
# record and list pointers (measured: 64 bytes with no key, 320 with two).
KEYS_FRAMING_BYTES = 64 * 1024
# A serialized value is its raw words plus a capnp header and type info (264 bytes measured);
# a bundle (formats/bundle.py) adds 20 bytes and 8 per value.
VALUE_FRAMING_BYTES = 1024
# Bounds on what any audited circuit may need, checked when a circuit is vetted. The zoo's
# largest: evaluation keys 1.21 GB (adult-income-mlp's sealed circuit), one input 54 MB (the
# same, a batch of 16), one output 164 KB (digits-cnn, 10 classes). A circuit over these would
# make every reader allocate its size per sample, whatever the model owner meant by it.
MAX_KEYS_BYTES = 2 * 1024**3
MAX_INPUT_BYTES = 256 * 1024**2
MAX_OUTPUT_BYTES = 16 * 1024**2


@cache
def _schema() -> Any:
    import capnp

    return capnp.load(str(_SCHEMA))


def _first_difference(theirs: Any, ours: Any, path: str = "") -> str | None:
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs)):
            if key not in theirs or key not in ours:
                return f"{path}/{key}"
            found = _first_difference(theirs[key], ours[key], f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return f"{path} (length)"
        for i, (a, b) in enumerate(zip(theirs, ours, strict=True)):
            found = _first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if theirs == ours and type(theirs) is type(ours) else path or "/"


def check_client_specs(theirs_raw: bytes, derived_raw: bytes) -> None:
    """Refuse a client.zip whose crypto parameters differ from those the auditor derived."""
    try:
        theirs = json.loads(theirs_raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ArtifactError("client.zip has an unreadable client.specs.json.") from exc
    derived = json.loads(derived_raw)
    if not isinstance(theirs, dict):
        raise ArtifactError("client.zip's client.specs.json is not an object.")
    unknown = sorted(set(theirs) - set(_SPECS_PARTS) - {"tfhers_specs"})
    if unknown:
        raise ArtifactError(f"client.zip's client.specs.json has unknown parts: {unknown}.")
    tfhers = json.dumps(theirs.get("tfhers_specs") or {})
    if any(token not in ("null", "") for token in _leaves(theirs.get("tfhers_specs") or {})):
        raise ArtifactError("client.zip asks for TFHE-rs ciphertexts, which audits do not use "
                            f"({tfhers[:80]}).")
    for part in _SPECS_PARTS:
        where = _first_difference(theirs.get(part), derived.get(part), part)
        if where:
            raise ArtifactError(
                f"client.zip's encryption parameters differ from those of its own circuit "
                f"compiled at 128-bit security (at {where}); the package is refused before any "
                "key or ciphertext is made."
            )


def _leaves(node: Any) -> list[str]:
    """Leaf values of the TFHE-rs part, as JSON tokens (lists of None are the honest case)."""
    if isinstance(node, dict):
        return [leaf for value in node.values() for leaf in _leaves(value)]
    if isinstance(node, list):
        return [leaf for value in node for leaf in _leaves(value)]
    return [json.dumps(node)]


def _expected_payload_bytes(kind: str, info: dict[str, Any]) -> int | None:
    """Bytes of a key's payload for its parameters (64-bit words); None when unknown."""
    params = info["params"]
    seeded = info.get("compression") == "seed"
    if kind == "lweBootstrapKeys":
        n, level = params["inputLweDimension"], params["levelCount"]
        k, size = params["glweDimension"], params["polynomialSize"]
        # A GGSW per input coefficient: (k+1) rows of (k+1) polynomials per level; seeded keys
        # keep only the bodies, then a 128-bit seed.
        words = n * level * (k + 1) * size if seeded else n * level * (k + 1) ** 2 * size
    elif kind == "lweKeyswitchKeys":
        n_in, n_out, level = (params["inputLweDimension"], params["outputLweDimension"],
                              params["levelCount"])
        words = n_in * level if seeded else n_in * level * (n_out + 1)
    else:
        return None
    return words * 8 + (16 if seeded else 0)


def check_evaluation_keys(raw: bytes, client_specs_raw: bytes) -> None:
    """Refuse evaluation keys that are not exactly the circuit's keyset, before any use."""
    expected = json.loads(client_specs_raw)["keyset"]
    found: dict[str, list[tuple[dict[str, Any], int]]] = {}
    try:
        with _schema().ServerKeyset.from_bytes(
            raw, traversal_limit_in_words=2 * (len(raw) // 8) + _TRAVERSAL_SLACK_WORDS
        ) as message:
            for kind, label in _KINDS.items():
                keys = getattr(message, kind)
                _check_count(len(keys), len(expected.get(kind, [])), label)
                found[kind] = [(key.info.to_dict(), _payload_bytes(key.payload.data))
                               for key in keys]
    except ArtifactError:
        raise
    except Exception as exc:  # pycapnp raises KjException (and ValueError) on malformed bytes
        raise ArtifactError("The evaluation keys are not a readable Concrete keyset.") from exc
    for kind, label in _KINDS.items():
        wanted = expected.get(kind, [])
        have = found[kind]
        for i, ((info, payload), spec) in enumerate(zip(have, wanted, strict=True)):
            where = _first_difference(info, spec, f"{kind}[{i}]")
            if where:
                raise ArtifactError(
                    f"The evaluation keys do not fit the circuit ({label} {i} differs at "
                    f"{where}): they were made for another circuit."
                )
            size = _expected_payload_bytes(kind, info)
            if size is not None and payload != size:
                raise ArtifactError(
                    f"The evaluation keys' {label} {i} holds {payload} bytes where its "
                    f"parameters make {size}: it is truncated or forged."
                )


def _check_count(have: int, wanted: int, label: str) -> None:
    if have != wanted:
        raise ArtifactError(f"The evaluation keys hold {have} {label}(s) where the circuit needs "
                            f"{wanted}: they were made for another circuit.")


def _payload_bytes(blobs: Any) -> int:
    if len(blobs) > _MAX_PAYLOAD_BLOBS:
        raise ArtifactError(f"The evaluation keys split a key into {len(blobs)} blobs; Concrete "
                            "writes one: they are forged.")
    return sum(len(blob) for blob in blobs)


def evaluation_keys_bytes(client_specs_raw: bytes) -> int:
    """The most bytes an ``evaluation_keys.bin`` for this keyset can hold: the payloads its
    parameters fix, plus framing."""
    keyset = json.loads(client_specs_raw)["keyset"]
    total = KEYS_FRAMING_BYTES
    for kind in _KINDS:
        for spec in keyset.get(kind, []):
            size = _expected_payload_bytes(kind, spec)
            if size is None:  # a packing keyswitch key: no payload formula, no bound
                return MAX_KEYS_BYTES + KEYS_FRAMING_BYTES
            total += size
    return total


def ciphertext_bytes(client_specs_raw: bytes, side: str) -> int:
    """The most bytes one serialized ``side`` ("inputs" or "outputs") of the circuit takes: the
    raw words its specs declare for every gate (in the compression the specs name, which is
    what the auditor encrypts with), plus framing (a bundle when there are several).

    A module lists one circuit per function: the largest bounds a call of any of them. An input
    that a module's wiring feeds from an output takes that output as it came out (uncompressed,
    where the specs name the seeded form a fresh encryption has): both sizes are allowed. A
    clear gate is counted too, which only loosens the bound by a few bytes."""
    circuits = json.loads(client_specs_raw)["circuits"]
    if side == "outputs":
        return max(_bundle_bytes(map(_gate_bytes, c["outputs"])) for c in circuits)
    module = module_of(circuit["name"] for circuit in circuits)
    outputs = {(c["name"], i): _gate_bytes(gate)
               for c in circuits for i, gate in enumerate(c["outputs"])}
    fed: dict[tuple[str, int], int] = {}
    for source, i, target, j in module.wires if module is not None else ():
        fed[target, j] = max(fed.get((target, j), 0), outputs[source, i])
    return max(_bundle_bytes(max(_gate_bytes(gate), fed.get((c["name"], j), 0))
                             for j, gate in enumerate(c["inputs"]))
               for c in circuits)


def _gate_bytes(gate: dict[str, Any]) -> int:
    raw = gate["rawInfo"]
    return math.prod(raw["shape"]["dimensions"]) * raw["integerPrecision"] // 8


def _bundle_bytes(values: Iterable[int]) -> int:
    return VALUE_FRAMING_BYTES + sum(size + VALUE_FRAMING_BYTES for size in values)


def check_sizes(client_specs_raw: bytes) -> None:
    """Refuse a circuit whose evaluation keys, input or output exceed the bounds above."""
    for what, size, bound in (
        ("evaluation keys", evaluation_keys_bytes(client_specs_raw) - KEYS_FRAMING_BYTES,
         MAX_KEYS_BYTES),
        ("input ciphertext", ciphertext_bytes(client_specs_raw, "inputs"), MAX_INPUT_BYTES),
        ("output ciphertext", ciphertext_bytes(client_specs_raw, "outputs"), MAX_OUTPUT_BYTES),
    ):
        if size > bound:
            raise ArtifactError(f"server.zip's circuit needs {_mib(size)} of {what} per "
                                f"sample, over the limit of {_mib(bound)}; the package is "
                                "refused.")


def read_evaluation_keys(path: Path, client_specs_raw: bytes) -> bytes:
    """The bytes of an untrusted ``evaluation_keys.bin``, read only if it is a regular file
    (not a link) whose size fits the circuit's keyset. Their content is checked
    (:func:`check_evaluation_keys`) where they are handed to Concrete."""
    limit = evaluation_keys_bytes(client_specs_raw)
    try:
        # O_NONBLOCK: a FIFO put in the file's place after the folder was loaded would block
        # the open until someone writes to it (the read below is of a regular file only).
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ArtifactError(f"The evaluation keys {path} cannot be read "
                            f"({exc.strerror or exc}).") from exc
    with open(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactError(f"The evaluation keys {path} are not a regular file.")
        if info.st_size > limit:
            raise ArtifactError(f"The evaluation keys hold {_mib(info.st_size)} where this "
                                f"circuit's keyset takes at most {_mib(limit)}: they were made "
                                "for another circuit or forged.")
        raw = handle.read(limit + 1)
    if len(raw) > limit:  # the file grew after fstat
        raise ArtifactError(f"The evaluation keys {path} changed while being read.")
    return raw


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB"
