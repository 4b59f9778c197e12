"""mrvl: an ahead-of-time compiler and simulator for a Marvell-MLIP-style ML accelerator.

The sub-packages live in the repository's top-level folders:
``mrvl.dialects`` (dialects/), ``mrvl.frontend`` (frontend/), ``mrvl.lowering`` (lowering/),
``mrvl.sim`` (sim/), ``mrvl.driver`` (driver/) and ``mrvl.models`` (models/).
"""

__version__ = "0.1.0"
