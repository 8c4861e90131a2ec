"""The VLM layer's errors (re-exported by tools.vlm). Messages are worded for users and never hold keys."""

from __future__ import annotations

from portraitcraft.errors import PortraitcraftError


class VLMError(PortraitcraftError):
    """Base class for every VLM failure."""


class VLMRequestError(VLMError):
    """The server refused the request (400/401/403/404...): retrying would not help.

    Attributes:
        status (int): the HTTP status code.
    """

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class VLMTransportError(VLMError):
    """Timeouts, cut connections, 429 or 5xx replies outlasted every retry.

    Attributes:
        attempts (int): HTTP attempts made for the request.
    """

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


class VLMAnswerError(VLMError):
    """The model's answer did not parse or validate, even after one re-ask with the error.

    Attributes:
        raw (str): the last answer text.
        problem (str): why it was rejected.
    """

    def __init__(self, message: str, *, raw: str, problem: str) -> None:
        super().__init__(message)
        self.raw = raw
        self.problem = problem
