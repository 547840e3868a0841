"""``python -m redo``: see :mod:`redo.cli`."""

from redo.cli import main

raise SystemExit(main())
