"""The ``memo`` command line: the demo, and a look inside a cache folder."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from memo._demo import main as demo

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="memo",
        description="memo: memoize coroutines on disk. With no command, run a short demo.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``memo`` command line; return the exit status."""
    _parser().parse_args(argv)
    return demo()
