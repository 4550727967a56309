"""Errors users see: one clear sentence each, never a traceback.

Every failure the CLI or the app can explain is raised as an :class:`AuditError` (or a
subclass); the CLI prints ``str(error)`` to stderr and exits non-zero, the app shows it in a
``gr.Error``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AuditError(Exception):
    """A failure explained to the user in one sentence."""


class ArtifactError(AuditError):
    """A model package, encrypted benchmark or run directory is missing, malformed or tampered."""


class IntegrityError(ArtifactError):
    """A file's SHA-256 does not match its manifest."""


class VersionError(ArtifactError):
    """An artifact was made with versions this install cannot load."""


class MismatchError(AuditError):
    """Two artifacts that must belong together do not (model vs benchmark, keys vs run)."""


class SchemaError(AuditError):
    """Plaintext data does not match the model's input schema."""


class CiphertextError(AuditError):
    """A ciphertext could not be deserialized or evaluated."""


class NotFoundError(AuditError):
    """A zoo id, path or reference that does not exist."""


class HubError(AuditError):
    """A Hub reference that cannot be used: unknown, unreachable, incomplete or malformed."""


class PublishError(AuditError):
    """A folder that must not, or cannot, be published."""


class SandboxCrash(AuditError):
    """A sandbox child process died instead of answering."""


class IncompleteRunError(MismatchError):
    """A run that does not hold every sample of its benchmark exactly once. Like a failed
    verification, the command exits 1 (not verified), not 2 (error)."""

    exit_code = 1


class BusyError(AuditError):
    """Another process owns the folder (a run being written)."""


class ChallengeError(AuditError):
    """A challenge, submission, identity or result that cannot be used as asked."""


class QuotaError(ChallengeError):
    """A submission over the challenge's quota; the sentence says when the next is allowed."""


class PrivacyError(AuditError):
    """A differential-privacy setting that cannot be used (epsilon out of range, a budget that
    does not parse, an unknown mechanism)."""


class BudgetError(PrivacyError):
    """An auditor key's privacy budget for the UTC day is spent, or the budget file cannot be
    trusted; the sentence says when the budget resets."""
