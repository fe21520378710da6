"""User-facing errors: raised for bad input, printed by the CLI as one line (no traceback)."""


class SegAdapterError(Exception):
    """A problem with the user's input (file, config, checkpoint) that they can fix."""


class ConfigError(SegAdapterError):
    """An invalid configuration: unknown key, wrong type, bad value."""


class DataError(SegAdapterError):
    """A dataset problem: missing folder, unreadable image, label mismatch."""


class CheckpointError(SegAdapterError):
    """A checkpoint that cannot be read or does not fit the model."""


class DiskFullError(SegAdapterError):
    """No space left (or the quota reached) while writing a file; what was written before is intact."""
