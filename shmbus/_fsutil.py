"""Small file-system helpers: atomic, fsynced replacement of small files, and reading
them back, through the bus's checked opens (_access: no link followed, the owner and
mode of the open file checked)."""
import json
import os
from typing import Any, Optional

from . import _access
from ._errors import InvalidFile, NotTrusted


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str, obj: Any) -> None:
    """Write, fsync, rename over, fsync the directory: a crash leaves the old or the new file, whole.
    The temporary file is made afresh (_access.create_file), so a link planted in its
    place is never written through."""
    tmp = f"{path}.tmp"
    with os.fdopen(_access.create_file(tmp), "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


def read_json(path: str, default: Any = None, trust: Optional["_access.Trust"] = None) -> Any:
    """The JSON in path (default if there is no such file), if trust (default: the
    supervisor's own files) accepts the file (NotTrusted if not: it is not read);
    InvalidFile naming the file if it is not JSON, or not a file that can be read."""
    try:
        fd = _access.open_file(path, os.O_RDONLY, trust or _access.own_trust())
    except FileNotFoundError:
        return default
    except NotTrusted:
        raise
    except OSError as e:   # EISDIR, EACCES, ELOOP...
        raise InvalidFile(f"{path} cannot be read ({e})") from None
    with os.fdopen(fd, "rb") as f:
        try:
            return json.loads(f.read())
        except (ValueError, OSError) as e:   # JSONDecodeError, UnicodeDecodeError, EIO...
            raise InvalidFile(f"{path} is not valid JSON ({e})") from None
