"""The domain exception tree: what can go wrong, and whether a caller may be told.

    GraphcondaError
    ├── ConfigError                  bad settings; the message names the key (CLI exits non-zero)
    ├── PublicError                  safe to show to the caller as is
    │   ├── AuthenticationError      401: no, wrong, expired or revoked credentials
    │   ├── PermissionDeniedError    403: known caller, not allowed
    │   ├── NotFoundError            404: absent, or private and the caller may not know it exists
    │   ├── AlreadyExistsError       409: name or file taken (upload without force)
    │   ├── ConflictError            409: state forbids it (upload to a mirror channel, ...)
    │   │   └── ChannelKindError     the channel's kind (local, proxy, mirror) does not take that action
    │   ├── InvalidInputError        400/422: bad argument; `field` names it
    │   │   ├── InvalidNameError     a channel, package, subdir or filename breaks CEP 26
    │   │   └── InvalidPackageError  archive unreadable, metadata missing or inconsistent
    │   │       └── ChecksumMismatchError
    │   └── TooLargeError            413: over a configured limit
    └── InternalError                never shown verbatim; logged, masked as "internal error"
        ├── StorageError             blob store unreachable or failing (HTTP 503, Retry-After)
        │   ├── BlobNotFoundError    a key that does not exist
        │   └── StorageFullError     507: out of space or quota; nothing partial was kept
        ├── DatabaseError            HTTP 503 with Retry-After
        │   └── DatabaseUnavailableError  refused, timed out, or busy past the wait: try again
        └── UpstreamError            a mirror's upstream failed (502)
            ├── UpstreamTimeoutError did not answer within mirror.upstream_timeout_seconds (504)
            └── UpstreamMismatchError   sent bytes that differ from its own record (never stored)

Services raise these; transports map them (HTTP status, GraphQL result unions).
"""

from __future__ import annotations


class GraphcondaError(Exception):
    """Base of every error graphconda raises on purpose."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(GraphcondaError):
    """Settings that cannot work; the message names the key and what to fix."""


class PublicError(GraphcondaError):
    """An expected failure whose message may be shown to the caller."""

    status_code = 400


class AuthenticationError(PublicError):
    status_code = 401


class PermissionDeniedError(PublicError):
    status_code = 403


class NotFoundError(PublicError):
    status_code = 404


class AlreadyExistsError(PublicError):
    status_code = 409


class ConflictError(PublicError):
    status_code = 409


class ChannelKindError(ConflictError):
    """The channel's kind (local, proxy, mirror) does not take the action (Quetz answers 405)."""


class InvalidInputError(PublicError):
    status_code = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidNameError(InvalidInputError):
    pass


class InvalidPackageError(InvalidInputError):
    pass


class ChecksumMismatchError(InvalidPackageError):
    pass


class TooLargeError(PublicError):
    status_code = 413


class InternalError(GraphcondaError):
    """A failure of ours or of a dependency; never shown verbatim to callers."""


class StorageError(InternalError):
    pass


class BlobNotFoundError(StorageError):
    pass


class StorageFullError(StorageError):
    """The store has no room (ENOSPC, a quota, an S3 server out of space)."""


class DatabaseError(InternalError):
    pass


class DatabaseUnavailableError(DatabaseError):
    """The database refused the connection, did not answer in time, or stayed busy: a passing condition."""


class UpstreamError(InternalError):
    """An upstream channel failed; the message names the upstream only in redacted form."""

    status_code = 502


class UpstreamTimeoutError(UpstreamError):
    status_code = 504


class UpstreamMismatchError(UpstreamError):
    pass
