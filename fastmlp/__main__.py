"""``python -m fastmlp``: the ``fastmlp`` command (see :mod:`fastmlp.cli`)."""

import sys

from .cli import main

# The guard matters: Dask's worker processes start by re-importing __main__.
if __name__ == "__main__":
    sys.exit(main())
