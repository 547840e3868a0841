"""Show the package's own source in the chapters, so the book explains the code that runs."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from IPython.display import Code


def show_source(*objects: Callable | type) -> Code:
    """Syntax-highlighted source of functions or classes of the package, in order."""
    return Code("\n\n".join(inspect.getsource(obj) for obj in objects), language="python")
