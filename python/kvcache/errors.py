"""The exceptions of the kvcache module: one class per core status code.

Every class derives from kvcache.Error and, where one fits, from the builtin a Python
caller would catch anyway (InvalidArgument is a ValueError, PermissionDenied a
PermissionError, IOError an OSError, NotFound a LookupError). str(e) is the core's
message, e.g. "pool 'x' not found".
"""


class Error(Exception):
    """Any failure the kvcache core reports."""

    code = "Unknown"


class NotFound(Error, LookupError):
    code = "NotFound"


class AlreadyExists(Error):
    code = "AlreadyExists"


class NoSpace(Error):
    """The pool cannot hold the entry, even after evicting what it may."""

    code = "NoSpace"


PoolFull = NoSpace


class InvalidArgument(Error, ValueError):
    code = "InvalidArgument"


class Corruption(Error):
    code = "Corruption"


class IOError(Error, OSError):  # noqa: A001 - the core's name for it
    code = "IOError"


class Busy(Error):
    code = "Busy"


class NotSupported(Error, NotImplementedError):
    code = "NotSupported"


class PermissionDenied(Error, PermissionError):
    code = "PermissionDenied"


_BY_CODE = {cls.code: cls for cls in (NotFound, AlreadyExists, NoSpace, InvalidArgument,
                                       Corruption, IOError, Busy, NotSupported,
                                       PermissionDenied)}


def for_code(code):
    """The class for a core status code name (Error for one this version does not know)."""
    return _BY_CODE.get(code, Error)
