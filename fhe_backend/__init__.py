"""Encrypted model audits with Concrete ML: model owner, auditor, server and verifier roles.

One folder per role and one for the trust boundary (the README's "Code map"; each folder's
``__init__`` lists its modules): ``owner/`` (package a model), ``auditor/`` (keys, encryption,
decryption: the only holder of secrets), ``server/`` (run circuits on ciphertexts, on Dask too),
``verifier/`` (re-execute and compare hashes), ``untrusted/`` (everything that reads hostile
bytes: zips, MLIR, configuration, evaluation keys, the sandbox), ``formats/`` (the versioned
artifacts), ``sealed/`` (aggregate-only audits), ``audits/`` (the audit kinds and their
statistics), ``hub/`` (zoo, references, Hugging Face Hub), ``challenge/`` (the test-set game),
``ui/`` (the Space). At the top: ``cli``, ``orchestration`` (every role in one process),
``report``, ``latency``, ``modes``, ``settings`` (every ``FHE_AUDIT_*`` variable), ``errors``.
"""

__version__ = "0.1.0"
