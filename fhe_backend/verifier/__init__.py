"""The verifier (anyone): re-executes a published run and compares it with its outputs and
transcript hashes; with the auditor's keys, settles bootstrapped circuits by decryption.

    verify.py  ``verify_run`` and its ``Verification``
"""

from .._lazy import attach

__all__ = ["Verification", "verify_run"]
__getattr__ = attach(__name__, {"Verification": "verify", "verify_run": "verify"})
