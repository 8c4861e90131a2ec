"""The project's exception family: the CLI prints these as one readable line (no traceback)."""


class PortraitcraftError(Exception):
    """Base class: an error whose message is already worded for the user."""

    exit_code: int = 1


class DataError(PortraitcraftError):
    """A data file cannot be read or does not have the expected shape."""

    exit_code = 2


class InputError(PortraitcraftError):
    """A bad argument or input item (names the item and the problem)."""

    exit_code = 2
