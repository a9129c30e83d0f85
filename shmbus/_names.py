"""Names that reach the file system: Kafka's rule, and the /dev/shm names built from them."""
import hashlib
import os
import pwd
import re

from ._errors import InvalidName

_LEGAL = re.compile(r"[A-Za-z0-9._-]{1,249}")
SHM_PREFIX = "shmbus"


def validate_name(name: object, what: str = "topic") -> str:
    """Return name if Kafka would accept it as a topic name, else raise InvalidName."""
    if not isinstance(name, str):
        raise InvalidName(f"{what} name must be a str, not {type(name).__name__}")
    if not _LEGAL.fullmatch(name) or name in (".", ".."):
        raise InvalidName(
            f"invalid {what} name {name!r}: use 1-249 characters from [A-Za-z0-9._-], not '.' or '..'"
        )
    return name


def user_tag() -> str:
    """The user part of shared-memory names (the login name, else the uid)."""
    try:
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        name = ""
    return name if _LEGAL.fullmatch(name or "") else f"uid{os.getuid()}"


def bus_prefix(bus: str, data_dir: str) -> str:
    """The start of every /dev/shm name of one bus: user, bus name and a short hash of
    the data dir, so two buses or two users never collide. ':' cannot appear in a
    name, so the parts never run into each other. A long bus name is shortened with
    a hash of it, so that every ring name fits NAME_MAX and still starts with this."""
    dir_hash = hashlib.sha1(os.fsencode(os.path.abspath(data_dir))).hexdigest()[:8]
    if len(bus) > 80:
        bus = f"{bus[:60]}~{hashlib.sha1(bus.encode()).hexdigest()[:12]}"
    return f"{SHM_PREFIX}:{user_tag()}:{bus}:{dir_hash}:"


# Room kept below NAME_MAX (255) for what a ring's name may carry after it: a retired
# ring's "@retired-<time_ns>", a new ring's "@next".
RING_NAME_MAX = 220


def ring_name(prefix: str, topic: str, partition: int) -> str:
    """The /dev/shm name of one partition's ring: the bus prefix, the topic (or a hash
    of it, when the whole would pass RING_NAME_MAX) and the partition."""
    name = f"{prefix}{topic}:{partition}"
    if len(name) > RING_NAME_MAX:
        name = f"{prefix}{topic[:40]}~{hashlib.sha1(topic.encode()).hexdigest()[:16]}:{partition}"
    return "/" + name
