"""Encrypted model audits with Concrete ML: model owner, auditor, server and verifier roles.

Modules, one per role or concern: ``owner`` (package a model), ``auditor`` (keys, encryption,
decryption; the only holder of secrets), ``server`` (run circuits on ciphertexts), ``verifier``
(re-execute and compare hashes), ``artifacts`` (the versioned formats), ``audits``
(accuracy, fairness, counterfactual, importance, surrogate), ``probes`` (query plans),
``importer`` (existing Concrete ML deployments), ``registry`` (the auditor's own test sets),
``hub`` and ``publish`` (Hugging Face Hub), ``distributed`` (Dask), ``demo`` (all roles in one
process), ``zoo`` (embedded models), ``references`` (zoo ids, folders and Hub refs to artifacts),
``settings`` (every ``FHE_AUDIT_*`` variable), ``errors``, ``ui`` (the Space), ``cli``. The
README's "Code map" lists them all.
"""

__version__ = "0.1.0"
