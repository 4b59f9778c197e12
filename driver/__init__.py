"""mrvl.driver: the staged compiler driver, the `mrvl` and `mrvl-opt` commands and the
Python API (the top layer)."""
