"""Typed errors: every failure a user can cause says what was wrong and what to do."""


class JaxlicError(Exception):
    """Base class of every error jaxlic raises on purpose."""


class ConfigError(JaxlicError, ValueError):
    """A configuration (model, training, board) is malformed or inconsistent."""


class ImageError(JaxlicError, ValueError):
    """An input image cannot be read or has a mode/size jaxlic cannot handle."""


class BitstreamError(JaxlicError, ValueError):
    """A bitstream is empty, truncated, corrupted or of an unknown format."""


class ModelMismatchError(BitstreamError):
    """A bitstream was produced by a different model than the one decoding it."""


class PackageError(JaxlicError, ValueError):
    """A model package file is missing, corrupt or of an unknown version."""


class PathError(JaxlicError, ValueError):
    """A command's input is missing, or its output would overwrite an input, a key or (without
    --force) an existing file, or cannot be written where it is named."""


class DataError(JaxlicError, ValueError):
    """A training or evaluation data set is empty or unusable."""


class IntegerizationError(JaxlicError, ValueError):
    """A model or integer graph cannot be expressed in (or read as) integer arithmetic."""


class SecurityError(JaxlicError):
    """Base of sealing and watermark failures."""


class SealError(SecurityError, ValueError):
    """A sealed blob is malformed, truncated or tampered with, or a signature does not verify."""


class KeyMismatchError(SecurityError, ValueError):
    """A key is of the wrong kind, or the blob is not addressed to this recipient."""


class WatermarkError(SecurityError, ValueError):
    """A watermark key does not fit the model, or extraction is impossible."""


class VTAError(JaxlicError):
    """Base of VTA toolchain failures (config, encoding, scheduling, simulation)."""


class VTAConfigError(VTAError, ConfigError):
    """A VTA configuration file is malformed or has an out-of-range field."""


class VTAEncodingError(VTAError, ValueError):
    """An instruction field does not fit its width, or an instruction stream is corrupt."""


class VTAScheduleError(VTAError, ValueError):
    """A layer cannot be tiled to fit the configuration's SRAM or micro-op limits."""


class VTASimulationError(VTAError, RuntimeError):
    """The simulator hit a deadlock, an out-of-range access or a forbidden instruction."""


class VTADeviceError(VTAError, RuntimeError):
    """A VTA device (board driver) is missing, misaddressed, or did not finish in time."""


class BundleError(VTAError, ValueError):
    """A deployment bundle is corrupt, foreign, tampered with, or does not fit the bitstream."""


class CompileError(JaxlicError, ValueError):
    """An integer graph cannot be compiled for a host CPU (TVM): an op, shape or board it cannot take."""
