"""``python -m contrastkit``: the command-line interface (same as the ``contrastkit`` command)."""

from contrastkit.cli import main

raise SystemExit(main())
