"""User-facing failures. The CLI turns each into one line and exit code 2."""


class SrExportError(Exception):
    """Base class of every error a user can act on."""


class ModelError(SrExportError):
    """Unknown model, variant or scale."""


class CheckpointError(SrExportError):
    """A checkpoint is missing, unreadable, or does not fit the architecture."""


class ShapeError(SrExportError):
    """An input or patch size the model cannot take."""


class BundleError(SrExportError):
    """A bundle is missing, truncated, tampered with, or from a newer format."""


class ImageError(SrExportError):
    """An image that cannot be read or written."""


class ExportError(SrExportError):
    """Export or verification of a graph failed."""


class OptionError(SrExportError, ValueError):
    """A numeric option or API parameter out of its type or range."""


class Interrupted(SrExportError):
    """A signal stopped a run; `code` is the exit status (128 + the signal number)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code
