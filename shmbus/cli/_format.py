"""How the commands print and read sizes, and the console their tables go to."""
import re

from rich.console import Console

from ._plumbing import CliError

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text):
    """'64MiB', '64M', '65536' -> bytes (binary units, as ring sizes are)."""
    match = _SIZE.match(str(text))
    if not match:
        raise CliError(f"not a size: {text!r} (examples: 65536, 512KiB, 64MiB)")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def wide_console():
    """A terminal's own width; when piped, wide enough that tables never wrap."""
    console = Console()
    return console if console.is_terminal else Console(width=250)


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
