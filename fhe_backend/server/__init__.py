"""The server: runs a package's circuit on an encrypted benchmark and holds no key.

    run.py          every ciphertext through the circuit: journal, resume, lock, transcript
    distributed.py  the same run on a Dask cluster, and the cluster check
    privacy.py      the noise a server adds to a sealed run's total, charged to the key's budget
"""

from .._lazy import attach

__all__ = ["FHEServer"]
__getattr__ = attach(__name__, {"FHEServer": "run"})
