"""How the commands print and read sizes, and the console their tables go to."""
import re

import click
from rich.console import Console

from ._plumbing import CliError

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# Off a terminal, lines are as long as they need to be: a file or a pipe gets every
# row of a table on one line (rich would wrap at 80 columns).
UNWRAPPED_WIDTH = 10_000


def parse_size(text, flag="size"):
    """'64MiB', '64M', '65536' -> bytes (binary units, as ring sizes are)."""
    match = _SIZE.match(str(text))
    if not match:
        raise CliError(f"{flag}: not a size: {text!r} (examples: 65536, 512KiB, 64MiB)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


class Size(click.ParamType):
    """A size flag: '64MiB', '512KiB', '65536'; at least `minimum` bytes."""
    name = "SIZE"

    def __init__(self, minimum=0, what=""):
        self.minimum = minimum
        self.what = what

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            number = value
        else:
            match = _SIZE.match(str(value))
            if not match:
                self.fail(f"not a size: {value!r} (examples: 65536, 512KiB, 64MiB)", param, ctx)
            number = int(match.group(1)) * _UNITS[match.group(2).upper()]
        if number < self.minimum:
            self.fail(f"{value} is too small: {self.what} is at least {human(self.minimum)}", param, ctx)
        return number


def wide_console(stderr=False):
    """A terminal's own width; off a terminal, never wrapped."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=UNWRAPPED_WIDTH, soft_wrap=True)


def human(n):
    """1536 -> '1.5 KiB': sizes as a person reads them."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{n:.0f} B"
            return f"{n:.0f} {unit}" if n == int(n) else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def count(n):
    """1234567 -> '1,234,567'."""
    return f"{n:,}"
