"""Registry errors as values: a spec error code, its HTTP status, and a message a person can act on.

The codes and statuses are those of the OCI distribution-spec ("Error Codes") plus the few that
Docker's v2 API, CNCF Distribution (PAGINATION_NUMBER_INVALID, UNKNOWN) and the token spec add,
and INSUFFICIENT_STORAGE (507, RFC 4918) for a full disk. Services raise `RegistryError`; one
place (the web layer) turns it into the spec's JSON body `{"errors": [{"code", "message", "detail"}]}`.
"""

from __future__ import annotations

import errno

# code -> (HTTP status, default message)
ERROR_CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (404, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "RANGE_INVALID": (416, "invalid content range"),
    "PAYLOAD_TOO_LARGE": (413, "payload too large"),
    "UNAVAILABLE": (503, "service unavailable"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "INSUFFICIENT_STORAGE": (507, "the registry's storage is full: an operator must free space "
                                  "(or add some) before anything more can be stored"),
    "UNKNOWN": (500, "unknown error"),
}

STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT)  # OSError errnos that mean: no space left to write


def is_storage_full(error: BaseException) -> bool:
    """Whether `error` is a write that failed for want of space (answered 507 INSUFFICIENT_STORAGE)."""
    return isinstance(error, OSError) and error.errno in STORAGE_FULL


class RegistryError(Exception):
    """An error the client should see, with the spec's code and a human message."""

    def __init__(self, code: str, message: str | None = None, detail=None, status: int | None = None,
                 headers: dict[str, str] | None = None):
        default_status, default_message = ERROR_CODES[code]
        self.code = code
        self.message = message or default_message
        self.detail = detail
        self.status = status or default_status
        self.headers = headers or {}
        super().__init__(f"{code}: {self.message}")

    def to_json(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"errors": [error]}


def bad_request(message: str) -> RegistryError:
    """400 for a request body or field the API cannot take (UNSUPPORTED, as the API answers it)."""
    return RegistryError("UNSUPPORTED", message, status=400)
