"""The one exception family every mrvl component raises for bad input.

Invariant: anything a user can cause (a malformed model, an invalid option, a corrupt binary,
a wrong input name) raises a subclass of `MrvlError` whose message says what is wrong and,
where it helps, what to do; the CLI prints it as one line and exits non-zero.
"""


class MrvlError(Exception):
    """Base class of all user-facing mrvl errors."""


class ModelImportError(MrvlError):
    """The ONNX model could not be read or imported (names the node where it can)."""


class PartitionError(MrvlError):
    """An invalid partitioning request (unknown layer name, bad option value)."""


class CompileError(MrvlError):
    """The backend compiler could not compile a sub-graph."""


class BinaryFormatError(MrvlError):
    """A model binary is corrupt, truncated or of an unsupported version."""


class SimulationError(MrvlError):
    """The simulator rejected a program at run time (for example a missing dependency)."""


class RuntimeInputError(MrvlError):
    """Inputs given to a compiled model do not match its signature (name, shape, dtype)."""
