"""``python -m memo``: the demo, or a look inside a cache (``python -m memo --help``)."""

import sys

from memo._cli import main

if __name__ == "__main__":
    sys.exit(main())
