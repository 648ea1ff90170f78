"""Exception tree. Branches say what the caller must do.

BridgeError
├── ConfigError            configuration is wrong: fix the file or environment and restart
├── StartupError           the bridge cannot start here (port taken, broker unreachable, topic missing)
├── CommandRejected        the command is wrong: report ``rejected``, never retry
└── ProviderCallError      a provider call failed
    ├── RetryableCallError     timeout, connection error, 429, 5xx: retry within the budget
    └── AuthError              credentials refused or token endpoint failing
"""

from __future__ import annotations

from bridge.messages.outcomes import ErrorKind


class BridgeError(Exception):
    """Root of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is invalid; the message names the field and what to do."""


class StartupError(BridgeError):
    """The bridge cannot start in this place; the message says what is missing and what to do."""


class CommandRejected(BridgeError):
    """The command cannot be executed as given."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class ProviderCallError(BridgeError):
    """A call to a provider failed before a usable HTTP response arrived."""

    retryable = False

    def __init__(
        self, kind: ErrorKind, message: str, retry_after_s: float | None = None, *, sent: bool = True
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        self.sent = sent
        """False when the request never reached the provider (no connection, no token): no effect."""


class RetryableCallError(ProviderCallError):
    retryable = True


class AuthError(ProviderCallError):
    """The token endpoint refused the credentials (or kept failing)."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(ErrorKind.AUTH, message, sent=False)  # the provider's own call never went
        self.retryable = retryable
