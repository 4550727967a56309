"""The server role on a Dask distributed cluster: same journal, same transcript, same outputs.

:class:`DaskExecutor` plugs into :meth:`FHEServer.run <fhe_backend.server.run.FHEServer.run>`: the
pending samples go to the cluster's workers in shards, and each shard's outputs come back and
are committed to the run's journal as soon as it finishes, so a distributed run resumes, reports
progress, stops and hashes exactly like a local one. A worker that dies loses nothing: Dask
reschedules its shard on another worker, and the journal only ever holds finished samples.

Each worker gets the model's ``server.zip`` and the evaluation keys once per run, through a
worker plugin (so a worker that joins or restarts mid-run gets them too), and compiles the circuit
and deserializes the keys once, on its first shard. What crosses the network: ``server.zip``,
the evaluation keys, input and output ciphertexts, per-sample records. Never a secret key: the
server role has none.

Every process of the cluster (scheduler included: it unpickles the task graph) must have this
package and the same versions installed. Before any work is sent, :func:`check_cluster` asks each
process what it runs and turns a process that lacks the package or runs other versions into one
sentence naming what differs, instead of Dask's deserialization traceback.

Dask is imported only when a cluster is used, so ``import fhe_backend`` stays light.
"""

from __future__ import annotations

import importlib.util
import math
import platform
import tempfile
import threading
from collections.abc import Generator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .. import __version__, settings
from ..errors import AuditError
from ..formats.artifacts import ModelPackage, check_versions, installed_versions
from ..formats.hashing import sha256_bytes, sha256_files
from ..untrusted.circuit import FHECircuit, load_evaluation_keys
from .run import Evaluated, Pending, evaluate_sample

# The app's server tab (on a Space) runs on this scheduler when the variable is set.
SCHEDULER_ENV = settings.SCHEDULER.name
# Shards are small enough that every worker gets several (load balance, little to redo when a
# worker dies) and large enough that Dask's per-task overhead (~1 ms) stays negligible.
SHARDS_PER_WORKER = 4
MAX_SHARD = 16
# What must be the same in every process of a cluster besides Python and this package's code.
CLUSTER_PACKAGES = ("concrete-ml", "concrete-python", "dask", "distributed", "cloudpickle")
INSTALL_HINT = ("install the same fhe-audit (pip install 'fhe-audit[dask]') and dependencies in "
                "every process of the cluster, scheduler included")


def executor_for(scheduler: str | None = None, workers: int | None = None) -> DaskExecutor | None:
    """A run on the scheduler at ``scheduler``, or on ``workers`` local worker processes, or
    ``None`` (evaluate in this process)."""
    if scheduler:
        return DaskExecutor(scheduler=scheduler)
    if workers:
        return DaskExecutor(workers=workers)
    return None


def executor_from_env() -> DaskExecutor | None:
    """What the app passes as ``FHEServer.run(executor=...)``: Dask when $FHE_AUDIT_SCHEDULER
    names a scheduler, else ``None`` (a local run)."""
    return executor_for(scheduler=settings.scheduler())


@dataclass
class DaskExecutor:
    """Evaluate on the Dask scheduler at ``scheduler`` (``tcp://HOST:PORT``), or when it is
    ``None`` on ``workers`` local worker processes started for the run and stopped after it."""

    scheduler: str | None = None
    workers: int = 2
    # OpenMP threads of Concrete inside each local worker; remote workers set their own.
    omp_threads: int = 1
    # Evaluate on these worker addresses only (the bench measures 1 worker of a cluster).
    only: tuple[str, ...] = ()

    def evaluate(
        self, package: ModelPackage, raw_keys: bytes, todo: list[Pending]
    ) -> Generator[Evaluated, None, None]:
        if not todo:
            return
        with self._client() as client:
            n_workers = len(self.only) or len(client.nthreads())
            if not n_workers:
                raise AuditError(f"The Dask scheduler at {self.scheduler} has no workers; start "
                                 f"some with `dask worker {self.scheduler}`.")
            check_cluster(client, self.scheduler or "a local cluster")
            plugin = _model_plugin_type()(package, raw_keys)
            client.register_plugin(plugin, name=plugin.name)
            try:
                yield from self._stream(client, plugin.name, shards(todo, n_workers))
            finally:
                # Frees the keys on the workers. Best effort: the run's outcome (or the error
                # being raised) matters more, and a later run of these keys replaces it.
                with suppress(Exception):
                    client.unregister_worker_plugin(plugin.name)

    @contextmanager
    def _client(self) -> Iterator[Any]:
        if self.scheduler is not None:
            with connect(self.scheduler) as client:
                yield client
            return
        with local_cluster(self.workers, self.omp_threads) as address, connect(address) as client:
            yield client

    def _stream(
        self, client: Any, plugin_name: str, parts: list[list[Pending]]
    ) -> Generator[Evaluated, None, None]:
        from distributed import KilledWorker, as_completed

        # No other reference to the futures: each shard's outputs are released on the worker
        # once they have been yielded (and committed) here.
        completed = as_completed(
            [client.submit(_evaluate_shard, plugin_name, part, pure=False,
                           workers=list(self.only) or None) for part in parts],
            loop=client.loop,  # not the default client's: this client is not made default
            with_results=True,
        )
        try:
            for _, results in completed:
                yield from results
        except KilledWorker as exc:
            # Dask reschedules the shard of a dying worker, but gives up on a shard that
            # killed several (distributed.scheduler.allowed-failures).
            raise AuditError(f"Dask workers kept dying while evaluating a shard ({exc}); the "
                             "samples done so far are kept, rerun into the same folder to "
                             "resume.") from exc


@cache
def identity() -> dict[str, str]:
    """What this process runs: Python, this package (version and a digest of its code, which
    tasks run by reference) and the packages a task's bytes go through."""
    code = sorted(Path(__file__).resolve().parent.parent.rglob("*.py"))  # the whole package
    found = {"python": platform.python_version(), "fhe_backend": __version__,
             "fhe_backend code": sha256_files(code)[:12]}
    for name in CLUSTER_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "missing"
    return found


def check_cluster(client: Any, where: str) -> None:
    """Refuse, in one sentence, a cluster where a process lacks this package or runs other
    versions than this one; nothing of ours is sent to a process before it is known to have
    the package (it could not unpickle it)."""
    # find_spec is the standard library's: any process can run it, package or not.
    lacking = ["the scheduler"] if client.run_on_scheduler(
        importlib.util.find_spec, "fhe_backend") is None else []
    lacking += sorted(f"worker {w}" for w, spec in
                      client.run(importlib.util.find_spec, "fhe_backend").items() if spec is None)
    if lacking:
        raise AuditError(f"The Dask cluster at {where} cannot import fhe_backend in "
                         f"{_listed(lacking)}: {INSTALL_HINT}.")
    mine = identity()
    found = {"the scheduler": client.run_on_scheduler(identity),
             **{f"worker {w}": theirs for w, theirs in client.run(identity).items()}}
    differs = [f"{process} has " + ", ".join(f"{k} {v} (here {mine.get(k)})" for k, v in
                                             sorted(theirs.items()) if mine.get(k) != v)
               for process, theirs in found.items() if theirs != mine]
    if differs:
        raise AuditError(f"The Dask cluster at {where} runs other versions than this process: "
                         f"{'; '.join(differs)}; {INSTALL_HINT}.")


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def shards(todo: list[Pending], n_workers: int) -> list[list[Pending]]:
    size = max(1, min(MAX_SHARD, math.ceil(len(todo) / (SHARDS_PER_WORKER * n_workers))))
    return [todo[i : i + size] for i in range(0, len(todo), size)]


@contextmanager
def connect(address: str) -> Iterator[Any]:
    """A Dask client of the scheduler at ``address``; an unreachable one is a one-line error."""
    from distributed import Client
    from distributed.comm import parse_address, parse_host_port

    try:
        # Checked first: Client() with a malformed address leaves a thread that prints a
        # traceback at exit.
        parse_host_port(parse_address(address)[1])
    except ValueError as exc:
        raise AuditError(f"{address!r} is not a Dask scheduler address (tcp://HOST:PORT).") from exc
    try:
        client = Client(address, set_as_default=False)
    except OSError as exc:  # TimeoutError included
        raise AuditError(f"Cannot reach the Dask scheduler at {address} ({exc}).") from exc
    with client:
        yield client


@contextmanager
def local_cluster(n_workers: int, omp_threads: int = 1) -> Iterator[str]:
    """``n_workers`` worker processes on this machine, each running one shard at a time with
    Concrete's OpenMP set to ``omp_threads`` threads; yields the scheduler's address."""
    from distributed import LocalCluster

    # OpenMP reads OMP_NUM_THREADS when Concrete is first loaded in the worker process, after
    # the nanny has set this environment (the nanny's own default would be 1).
    env = {"OMP_NUM_THREADS": str(omp_threads)}
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, env=env) as cluster:
        yield cluster.scheduler_address


def _evaluate_shard(plugin_name: str, shard: list[Pending]) -> list[Evaluated]:
    """Runs on a worker, with the circuit and keys its plugin loaded once for the whole run."""
    from distributed import get_worker

    worker = get_worker()
    plugin = worker.plugins.get(plugin_name)
    if plugin is None:  # another run of the same model and keys finished and unloaded them
        raise AuditError("The model was unloaded from the Dask workers by a concurrent run of the "
                         "same encrypted benchmark; rerun into the same folder to resume.")
    circuit, keys = plugin.loaded()
    return [(index, *evaluate_sample(lambda ct: circuit.run(ct, keys, function=plugin.function),
                                     sample_id, ciphertext, worker.address))
            for index, sample_id, ciphertext in shard]


@cache
def _model_plugin_type() -> type:
    """The worker plugin class, defined on first use so that importing this module does not
    import Dask (Dask only accepts plugins that inherit from its own base class)."""
    from distributed import WorkerPlugin

    class ModelOnWorker(WorkerPlugin):
        """A model's server.zip and evaluation keys, loaded on a worker at most once per run."""

        def __init__(self, package: ModelPackage, raw_keys: bytes):
            # Named by model fingerprint and keys: what the loaded circuit and keys depend on.
            self.name = f"fhe-audit/{package.fingerprint}/{sha256_bytes(raw_keys)}"
            self.server_zip = package.server_zip.read_bytes()
            # The zip's name is its role (server.zip, sealed_server.zip, a layer's), which
            # says what members it must hold.
            self.zip_name = package.server_zip.name
            self.function = package.function  # a sealed batch runs the module's ``count``
            self.raw_keys = raw_keys
            self.versions = installed_versions()

        def setup(self, worker: Any) -> None:
            # Loading waits for the first shard: it takes seconds and setup() runs on the
            # worker's event loop. The lock makes a worker's task threads share one load.
            self.address = worker.address
            self._lock = threading.Lock()
            self._loaded: tuple[FHECircuit, Any] | None = None

        def loaded(self) -> tuple[FHECircuit, Any]:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._load()
                return self._loaded

        def _load(self) -> tuple[FHECircuit, Any]:
            # Another Concrete would compile another circuit: same check as for a package.
            check_versions(self.versions, f"The run sent to Dask worker {self.address}")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / self.zip_name
                path.write_bytes(self.server_zip)
                circuit = FHECircuit(path)
                keys = load_evaluation_keys(self.raw_keys, path)
            # Loaded for good: drop the serialized copies (evaluation keys can be hundreds of MB).
            self.server_zip = self.raw_keys = b""
            return circuit, keys

    return ModelOnWorker
