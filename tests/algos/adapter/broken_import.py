"""A package whose import fails."""

import definitely_not_an_installed_module_xyz  # noqa: F401


class Broken:
    pass
