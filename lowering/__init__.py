"""mrvl's passes and targets, one pass per file.

`get_all_passes()` and `get_all_targets()` map names to loader functions, so that mrvl-opt
imports a pass only when a pipeline names it.  Add one line per pass or target.
"""

from collections.abc import Callable

from xdsl.passes import ModulePass
from xdsl.utils.target import Target


def get_all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    """Pass name (as written in a pipeline) -> loader of its ModulePass class."""
    return {}


def get_all_targets() -> dict[str, Callable[[], type[Target]]]:
    """Target name (as given to `mrvl-opt -t`) -> loader of its Target class."""
    return {}
