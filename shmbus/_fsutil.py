"""Small file-system helpers: atomic, fsynced replacement of small files."""
import json
import os
from typing import Any


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str, obj: Any) -> None:
    """Write, fsync, rename over, fsync the directory: a crash leaves the old or the new file, whole."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


class InvalidFile(ValueError):
    """A file that does not hold what it should; the message names it."""


def read_json(path: str, default: Any = None) -> Any:
    """The JSON in path, default if there is no such file; InvalidFile naming the file if
    it is not JSON (or not a file that can be read)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return default
    except (ValueError, OSError) as e:  # JSONDecodeError, UnicodeDecodeError, EISDIR, EACCES...
        raise InvalidFile(f"{path} is not valid JSON ({e})") from None
