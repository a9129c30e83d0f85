"""Record values that prove their own integrity, and a reference murmur2 to test the
C one against."""
import hashlib


def make_value(tag, seq, size=0):
    """A value that names its sender, sequence number and length, and fills the
    rest with bytes derived from them, so a torn, shifted or stale copy never
    passes check_value. `size` is a minimum: the header alone may be longer."""
    size = max(size, len(f"{tag}:{seq}:0000000000:"))
    head = f"{tag}:{seq}:{size:010d}:".encode()
    fill = size - len(head)
    pattern = hashlib.blake2b(head, digest_size=16).digest()
    return head + (pattern * (fill // 16 + 1))[:fill]


def check_value(value):
    """(tag, seq) of a make_value value; ValueError if it is not exactly one."""
    if not isinstance(value, bytes):
        raise ValueError(f"value is {type(value).__name__}, not bytes")
    try:
        tag, seq, size, _ = value.split(b":", 3)
        seq, size = int(seq), int(size)
    except ValueError:
        raise ValueError(f"garbage value {value[:60]!r}") from None
    if len(value) != size or make_value(tag.decode(), seq, size) != value:
        raise ValueError(f"torn or corrupt value {value[:60]!r} (len {len(value)}, header says {size})")
    return tag.decode(), seq


M32 = 0xFFFFFFFF


def reference_murmur2(data):
    """A straight port of org.apache.kafka.common.utils.Utils.murmur2 (Java
    ints made explicit: 32-bit wrap, >>> as an unsigned shift)."""
    length = len(data)
    m, r = 0x5BD1E995, 24
    h = (0x9747B28C ^ length) & M32
    for i in range(length // 4):
        k = data[4 * i] | data[4 * i + 1] << 8 | data[4 * i + 2] << 16 | data[4 * i + 3] << 24
        k = (k * m) & M32
        k ^= k >> r
        k = (k * m) & M32
        h = (h * m) & M32
        h ^= k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & M32
    h ^= h >> 13
    h = (h * m) & M32
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h
