"""Client errors as values: a short code, the process exit status it maps to, and a message a person
can act on. Commands turn them into one line on stderr (and a JSON object with `--json`).

Exit statuses are part of the command-line contract, so scripts can branch on them:

    0  success                     4  not found (repository, tag, manifest, blob, platform)
    1  any other failure           5  verification failed (digest or size mismatch)
    2  usage error (click)         6  the registry could not be reached
    3  authentication or access denied        130  interrupted
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_VERIFY = 5
EXIT_NETWORK = 6
EXIT_INTERRUPTED = 130


class ClientError(Exception):
    """A failure the user should see; `code` is a stable machine-readable name."""

    code = "ERROR"
    exit_code = EXIT_FAILURE

    def __init__(self, message: str, code: str | None = None, detail=None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.detail = detail

    def to_json(self) -> dict:
        error = {"code": self.code, "message": self.message, "exit": self.exit_code}
        if self.detail is not None:
            error["detail"] = self.detail
        return {"error": error}


class UsageError(ClientError):
    code = "USAGE"
    exit_code = EXIT_USAGE


class AuthError(ClientError):
    code = "UNAUTHORIZED"
    exit_code = EXIT_AUTH


class NotFound(ClientError):
    code = "NOT_FOUND"
    exit_code = EXIT_NOT_FOUND


class VerificationError(ClientError):
    code = "DIGEST_MISMATCH"
    exit_code = EXIT_VERIFY


class NetworkError(ClientError):
    code = "UNREACHABLE"
    exit_code = EXIT_NETWORK


class RegistryResponseError(ClientError):
    """The registry answered with an error the client cannot work around."""

    code = "REGISTRY_ERROR"


class Interrupted(ClientError):
    code = "INTERRUPTED"
    exit_code = EXIT_INTERRUPTED
