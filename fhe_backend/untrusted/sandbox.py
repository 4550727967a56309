"""Child processes for native work on untrusted bytes: compiling circuits, evaluating ciphertexts.

Concrete's compiler and runtime are native code: an MLIR text it cannot handle aborts the whole
process, and a ciphertext or evaluation key it cannot handle crashes it (a Rust panic, then a
segfault). So nothing of the kind happens in the process that serves the Space or runs the CLI:

* :func:`vet` sends a package's circuit to a fresh child that parses it, checks it against the
  operation allow-list (:mod:`fhe_backend.untrusted.mlir_policy`) and compiles it with the security
  level pinned at 128 bits. Only a circuit that passed is ever compiled in another process (the
  simulator, a Dask worker), and the client specs the child derived are the only ones the
  auditor encrypts with. Results are cached per circuit digest for the life of the process.
* :class:`IsolatedCircuit` evaluates ciphertexts in a long-lived child; the evaluation keys are
  checked against the circuit's keyset first (:mod:`fhe_backend.untrusted.keyset`). A crash fails
  the sample being evaluated, in one sentence, and the next sample gets a fresh child.
* A long-lived server (the Space) calls :func:`keep_warm`: one spare child per circuit is
  started and compiled ahead, so a run does not wait for Python, Concrete and the compiler.
  A spare has evaluated nothing when it is handed out, and a child is never reused for a
  second run: one run's ciphertexts cannot affect another's.
* The sealed total's module (``composition.py``) is vetted and compiled with the registry's
  composition rules; a ``run`` request names the function and carries ``noise``'s clear argument
  in its JSON header.

The child runs ``python -m fhe_backend.untrusted.sandbox`` with no secret in its environment,
no core dumps, in an empty working directory; it talks over its stdin/stdout in length-prefixed
frames (a JSON header, then binary blobs); what Concrete prints goes to its stderr, which is
discarded unless ``FHE_AUDIT_DEBUG`` is set.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from .. import settings
from ..errors import ArtifactError, AuditError, CiphertextError, SandboxCrash
from ..formats.hashing import sha256_bytes
from .composition import check_declared, concrete_rules
from .configuration import load_configuration
from .keyset import check_sizes, ciphertext_bytes
from .safezip import check_zip, read_member, read_optional

# A compile of the zoo's largest circuit takes ~1 s here; the bound only stops a runaway.
VET_TIMEOUT_S = settings.COMPILE_TIMEOUT.positive_float()
# A run is abandoned after this many crashes of its evaluation child.
MAX_CRASHES = 3
_FRAME = struct.Struct(">Q")
_MAX_FRAME = 4 * 1024**3
# Environment variables a child never needs and must not see (tokens, credentials).
_SECRET_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "KEY", "AUTH")
# Short names matched as whole parts of the variable's name ("PAT" is in "PATH").
_SECRET_PARTS = frozenset({"PAT", "PW", "PWD", "PASS"})


@dataclass(frozen=True)
class Vetted:
    """A circuit that passed the allow-list and compiled in a child at 128-bit security."""

    digest: str
    functions: tuple[str, ...]  # one name, or the sealed total module's (composition.py)
    client_specs: bytes  # Concrete's client.specs.json, as the child derived it
    pbs_counts: dict[str, int]  # per function
    size_of_bootstrap_keys: int
    size_of_keyswitch_keys: int

    @property
    def pbs_count(self) -> int:
        """PBS of one call of the circuit; of a module, of one call of each function."""
        return sum(self.pbs_counts.values())

    @cached_property  # read per sample: parse the specs once
    def input_bytes(self) -> int:
        """The most bytes one serialized input (a sample, a sealed batch, any function's
        bundle of encrypted arguments) can take."""
        return ciphertext_bytes(self.client_specs, "inputs")

    @cached_property  # read per sample: parse the specs once
    def output_bytes(self) -> int:
        """The most bytes one serialized output (of any function) can take."""
        return ciphertext_bytes(self.client_specs, "outputs")


def read_circuit(server_zip: Path) -> tuple[bytes, bytes]:
    """The MLIR text and configuration.json of a server.zip whose members are safe."""
    check_zip(server_zip)
    return read_member(server_zip, "circuit.mlir"), read_member(server_zip, "configuration.json")


def vet(server_zip: Path) -> Vetted:
    """Check and compile a server.zip's circuit in a child; raises ArtifactError if refused."""
    vetted = vet_circuit(*read_circuit(Path(server_zip)))
    check_declared_composition(Path(server_zip), vetted.functions)
    return vetted


def check_declared_composition(server_zip: Path, functions: tuple[str, ...]) -> None:
    """Refuse a server.zip whose composition_rules.json is not ours for its functions. The file
    is never used (every compile takes the registry's rules), so it is read apart from the
    circuit: only its agreement is checked."""
    declared = read_optional(server_zip, "composition_rules.json")
    if declared is not None:
        check_declared(declared, functions)


def vet_circuit(mlir: bytes, configuration: bytes) -> Vetted:
    """:func:`vet` on a circuit already read, for callers that then compile these very bytes."""
    digest = sha256_bytes(mlir + b"\0" + configuration)
    if digest in _REFUSED:  # the same bytes get the same verdict, without a second child
        raise ArtifactError(_REFUSED[digest])
    try:
        return _vet(mlir, configuration)
    except (ArtifactError, SandboxCrash) as exc:
        # A crash or a stall is a verdict too: compiling it again would only cost another child
        # (up to VET_TIMEOUT_S of a core) each time the package is asked for.
        _REFUSED[digest] = str(exc)
        raise


_REFUSED: dict[str, str] = {}


@lru_cache(maxsize=32)
def _vet(mlir: bytes, configuration: bytes) -> Vetted:
    load_configuration(configuration)  # JSON and tag checks first, in this process: no native
    with _Child() as child:
        header, (specs,) = child.call({"op": "vet"}, [mlir, configuration], timeout=VET_TIMEOUT_S,
                                      crashed="the sandboxed compiler crashed on server.zip's "
                                              "circuit; the package is refused")
    check_sizes(specs)  # keys and ciphertexts every reader will hold, per sample
    return Vetted(digest=sha256_bytes(mlir + b"\0" + configuration), client_specs=specs,
                  functions=tuple(sorted(header["functions"])),
                  pbs_counts=dict(header["pbs_counts"]),
                  **{k: header[k] for k in ("size_of_bootstrap_keys", "size_of_keyswitch_keys")})


def trusted_client_specs(client_zip: Path, server_zip: Path) -> bytes:
    """The client specs the auditor encrypts with: derived from the circuit in a sandboxed
    compile at 128-bit security, after refusing a client.zip that claims other parameters."""
    from .keyset import check_client_specs

    derived = vet(server_zip).client_specs
    check_client_specs(read_member(client_zip, "client.specs.json"), derived)
    return derived


@lru_cache(maxsize=32)
def vet_simulation(mlir: bytes, configuration: bytes) -> Vetted:
    """Compile a vetted circuit for Concrete's simulator in a child first: the simulator is
    another lowering, which the FHE compile of :func:`vet` did not exercise, and the caller
    compiles it in its own process next."""
    vetted = vet_circuit(mlir, configuration)
    with _Child() as child:
        child.call({"op": "simulate"}, [mlir, configuration], timeout=VET_TIMEOUT_S,
                   crashed="the sandboxed compiler crashed on server.zip's circuit compiled "
                           "for simulation; the package is refused")
    return vetted


class IsolatedCircuit:
    """A package's circuit evaluated in a child process, with keys checked before use."""

    def __init__(self, server_zip: Path, raw_keys: bytes):
        from .keyset import check_evaluation_keys

        self._mlir, self._configuration = read_circuit(Path(server_zip))
        self._vetted = _vet(self._mlir, self._configuration)
        check_declared_composition(Path(server_zip), self._vetted.functions)
        check_evaluation_keys(raw_keys, self._vetted.client_specs)
        self._keys = raw_keys
        self._child: _Child | None = None
        self.crashes = 0

    def _ready(self) -> _Child:
        if self._child is None:
            child = _spares.take(self._vetted.digest) or _compiled_child(self._mlir,
                                                                         self._configuration)
            _spares.refill(self._vetted.digest, self._mlir, self._configuration)
            try:
                child.call({"op": "keys"}, [self._keys], timeout=VET_TIMEOUT_S,
                           crashed="the evaluation process crashed while loading the keys")
            except BaseException:
                child.close()
                raise
            self._child = child
        return self._child

    def run(self, ciphertext: bytes, function: str | None = None,
            clear: Sequence[int] | None = None) -> bytes:
        """Evaluate one serialized ciphertext (a bundle of a function's encrypted arguments)
        through ``function`` (None: the circuit's only one), with ``clear`` its clear argument
        if it takes one; CiphertextError when it cannot be."""
        import numpy as np

        # JSON carries Python numbers: numpy integers become ints, anything else stays what it
        # is for the child to refuse (evaluation.py checks type, length and range).
        request = {"op": "run", "function": function,
                   "clear": None if clear is None else np.asarray(clear).tolist()}
        child = self._ready()
        try:
            # An output is at most the vetted circuit's output size: a larger frame is not read.
            _, (output,) = child.call(request, [ciphertext], timeout=None,
                                      crashed="the evaluation process crashed on this sample: "
                                              "its ciphertext does not fit the circuit",
                                      max_frame=self._vetted.output_bytes)
        except SandboxCrash as exc:
            self.close()
            self.crashes += 1
            if self.crashes >= MAX_CRASHES:
                raise AuditError(f"The run is abandoned: the evaluation process crashed "
                                 f"{self.crashes} times; the encrypted benchmark is not usable "
                                 "with this model.") from exc
            raise CiphertextError(str(exc)) from exc
        return output

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None

    def __enter__(self) -> IsolatedCircuit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def keep_warm(enabled: bool = True) -> None:
    """Keep one compiled spare child per circuit ready (for a long-lived server)."""
    _spares.enabled = enabled
    if not enabled:
        _spares.clear()


def _compiled_child(mlir: bytes, configuration: bytes) -> _Child:
    child = _Child()
    try:
        child.call({"op": "compile"}, [mlir, configuration], timeout=VET_TIMEOUT_S,
                   crashed="the evaluation process crashed while compiling the circuit")
    except BaseException:
        child.close()
        raise
    return child


class _Spares:
    """Fresh children with a circuit compiled, waiting for keys; at most MAX_SPARES kept."""

    MAX_SPARES = 2

    def __init__(self) -> None:
        self.enabled = False
        self._lock = threading.Lock()
        self._ready: dict[str, _Child] = {}

    def take(self, digest: str) -> _Child | None:
        with self._lock:
            child = self._ready.pop(digest, None)
        if child is not None and child.proc.poll() is not None:  # died while waiting
            child.close()
            return None
        return child

    def refill(self, digest: str, mlir: bytes, configuration: bytes) -> None:
        if not self.enabled:
            return

        def start() -> None:
            try:
                child = _compiled_child(mlir, configuration)
            except AuditError:
                return  # a spare is an optimisation: the next run starts its own child
            with self._lock:
                if not self.enabled or digest in self._ready:
                    child.close()
                    return
                while len(self._ready) >= self.MAX_SPARES:
                    self._ready.pop(next(iter(self._ready))).close()
                self._ready[digest] = child

        threading.Thread(target=start, name="fhe-audit-spare", daemon=True).start()

    def clear(self) -> None:
        with self._lock:
            children, self._ready = list(self._ready.values()), {}
        for child in children:
            child.close()


_spares = _Spares()


# --------------------------------------------------------------------------------------------
# The parent's end of the pipe


def _child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not any(word in k.upper() for word in _SECRET_WORDS)
            and not _SECRET_PARTS & set(k.upper().split("_"))}


class _Child:
    def __init__(self) -> None:
        self._cwd = tempfile.TemporaryDirectory(prefix="fhe-audit-sandbox-")
        env = _child_env()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(),
                                                          env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fhe_backend.untrusted.sandbox"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            # What Concrete and the compiler print (diagnostics, crash backtraces with stack
            # addresses) is kept out of the user's terminal and logs unless asked for.
            stderr=None if settings.DEBUG.text() else subprocess.DEVNULL,
            cwd=self._cwd.name, env=env,
            start_new_session=True,  # a Ctrl-C for the parent is not the child's
        )

    def call(self, header: dict[str, Any], blobs: list[bytes], *, timeout: float | None,
             crashed: str, max_frame: int = _MAX_FRAME) -> tuple[dict[str, Any], list[bytes]]:
        timer = threading.Timer(timeout, self.proc.kill) if timeout else None
        if timer:
            timer.start()
        try:
            assert self.proc.stdin is not None and self.proc.stdout is not None
            _send(self.proc.stdin, header, blobs)
            reply, out = _receive(self.proc.stdout, max_frame)
        except (OSError, EOFError, ValueError) as exc:
            if isinstance(exc, ValueError) and self.proc.poll() is None:
                self.proc.kill()  # a reply larger than allowed: the child is still writing it
            code = self.proc.wait()
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            if timer and not timer.is_alive() and code == -signal.SIGKILL:
                how = f"no answer within {timeout:.0f} s"
            raise SandboxCrash(f"{crashed[0].upper()}{crashed[1:]} ({how}).") from exc
        finally:
            if timer:
                timer.cancel()
        if not reply.get("ok"):
            error = CiphertextError if reply.get("kind") == "ciphertext" else ArtifactError
            raise error(str(reply.get("error", "the sandboxed step failed")))
        return reply, out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                stream.close()
        self._cwd.cleanup()

    def __enter__(self) -> _Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])  # the folder that holds fhe_backend/


def _send(stream: BinaryIO, header: dict[str, Any], blobs: list[bytes]) -> None:
    for frame in (json.dumps({**header, "n_blobs": len(blobs)}).encode("utf-8"), *blobs):
        stream.write(_FRAME.pack(len(frame)))
        stream.write(frame)
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError("the other end closed the pipe")
    return data


def _read_frame(stream: BinaryIO, max_frame: int = _MAX_FRAME) -> bytes:
    (size,) = _FRAME.unpack(_read_exact(stream, _FRAME.size))
    if size > max_frame:
        raise ValueError("frame too large")
    return _read_exact(stream, size)


def _receive(stream: BinaryIO, max_frame: int = _MAX_FRAME,
             ) -> tuple[dict[str, Any], list[bytes]]:
    header = json.loads(_read_frame(stream))
    return header, [_read_frame(stream, max_frame)
                    for _ in range(int(header.get("n_blobs", 0)))]


# --------------------------------------------------------------------------------------------
# The child


def _compile(mlir: bytes, configuration: bytes, simulated: bool = False,
             ) -> tuple[Any, dict[str, Any]]:
    from .mlir_policy import check_mlir

    try:
        text = mlir.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError("server.zip has an unreadable circuit.mlir.") from exc
    shape = check_mlir(text)
    from concrete import fhe  # seconds to import: only for a circuit the allow-list passed
    try:
        server = fhe.Server.create(text, load_configuration(configuration),
                                   is_simulated=simulated,
                                   composition_rules=concrete_rules(shape.names))
    except Exception as exc:  # the MLIR compiler raises plain RuntimeError on bad input
        first = (str(exc).strip().splitlines() or ["compilation error"])[0][:200]
        raise ArtifactError(f"server.zip's circuit does not compile ({first}).") from exc
    if simulated:  # the FHE compile (vet) already checked the circuit's shape
        return server, {}
    compiled = sorted(circuit.get_name() for circuit in server.program_info.get_circuits())
    if compiled != sorted(shape.names) or any(f.n_outputs != 1 for f in shape.functions):
        raise ArtifactError("server.zip's circuit must be functions with one output each.")
    return server, {
        "functions": list(shape.names),
        "pbs_counts": {name: int(server.programmable_bootstrap_count(name))
                       for name in shape.names},
        "size_of_bootstrap_keys": int(server.size_of_bootstrap_keys),
        "size_of_keyswitch_keys": int(server.size_of_keyswitch_keys),
    }


def _serve(requests: BinaryIO, replies: BinaryIO) -> None:
    server: Any = None
    keys: Any = None
    while True:
        try:
            header, blobs = _receive(requests)
        except EOFError:
            return
        _cpu_budget()
        try:
            if header["op"] == "vet":
                server, info = _compile(*blobs)
                _send(replies, {"ok": True, **info}, [server.client_specs.serialize()])
            elif header["op"] == "simulate":
                _compile(*blobs, simulated=True)
                _send(replies, {"ok": True}, [])
            elif header["op"] == "compile":
                server, _ = _compile(*blobs)
                _send(replies, {"ok": True}, [])
            elif header["op"] == "keys":
                from concrete import fhe

                keys = fhe.EvaluationKeys.deserialize(blobs[0])
                _send(replies, {"ok": True}, [])
            elif header["op"] == "run":
                from .evaluation import evaluate

                _send(replies, {"ok": True}, [evaluate(server, blobs[0], keys,
                                                       header.get("function"),
                                                       header.get("clear"))])
            else:
                raise ArtifactError(f"unknown sandbox request {header['op']!r}")
        except AuditError as exc:
            kind = "ciphertext" if isinstance(exc, CiphertextError) else "artifact"
            _send(replies, {"ok": False, "kind": kind, "error": str(exc)}, [])


def _cpu_budget() -> None:
    """Allow the next request SANDBOX_CPU seconds of CPU beyond what the child has used: past
    that the kernel sends SIGXCPU, which ends the child (a crash the parent reports)."""
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime) + 1
    _lower_limit(resource.RLIMIT_CPU, spent + settings.SANDBOX_CPU.positive_int(), hard=False)


def _lower_limit(which: int, value: int, *, hard: bool) -> None:
    """Set a soft limit (and the hard one too if ``hard``), never above a hard limit someone
    set already (raising it is not allowed)."""
    _, ceiling = resource.getrlimit(which)
    if ceiling != resource.RLIM_INFINITY:
        value = min(value, ceiling)
    resource.setrlimit(which, (value, value if hard else ceiling))


def _main() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file with keys in it
    # A circuit, keys or a ciphertext that would need more memory than any honest audit ends
    # this child (an allocation fails: Concrete aborts), not the machine. RLIMIT_DATA counts
    # private writable memory (heap, anonymous maps, stacks), what allocations really take;
    # RLIMIT_AS would also count the 2.9 GB of address space the child maps without using
    # (libraries, reservations), which grows with the machine's thread count.
    _lower_limit(resource.RLIMIT_DATA, settings.SANDBOX_MEMORY.positive_int() * 1024**2,
                 hard=True)
    # The protocol owns the original stdout; Concrete's own prints go to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = os.fdopen(os.dup(0), "rb")
    _serve(requests, replies)
    replies.flush()
    # Concrete's atexit hook would rewrite the exit status; nothing is left to clean up.
    os._exit(0)


if __name__ == "__main__":
    _main()
