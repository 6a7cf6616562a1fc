"""Sub-commands of the ``contrastkit`` CLI, one module each (see ``contrastkit.cli``)."""
