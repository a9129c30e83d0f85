"""Record headers as they travel inside a frame: encode, then decode to the
same (name, value) pairs in the same order."""
import pytest

from shmbus._codec import decode_headers, encode_headers


@pytest.mark.parametrize("headers", [
    [],
    [("unit", b"g")],
    [("a", b""), ("b", b"\x00\xff" * 100)],
    [("dup", b"1"), ("dup", b"2"), ("dup", b"1")],     # duplicates and order are kept
    [("ünïcode-名前", "värde".encode())],
    [("none", None), ("after", b"x")],
    [("", b"empty name")],
    [(f"h{i}", bytes([i]) * i) for i in range(50)],
])
def test_round_trip(headers):
    assert decode_headers(encode_headers(headers)) == tuple((k, v) for k, v in headers)


def test_bytes_like_values_decode_as_bytes():
    decoded = decode_headers(encode_headers([("ba", bytearray(b"ba")), ("mv", memoryview(b"xmvx")[1:3])]))
    assert decoded == (("ba", b"ba"), ("mv", b"mv"))
    assert all(type(v) is bytes for _, v in decoded)


def test_dict_headers_keep_insertion_order():
    assert decode_headers(encode_headers({"z": b"1", "a": b"2"})) == (("z", b"1"), ("a", b"2"))


def test_empty_blob_decodes_to_no_headers():
    assert decode_headers(b"") == ()


@pytest.mark.parametrize("headers", [
    [(b"bytes-name", b"v")],
    [(1, b"v")],
    [("name", "str value")],
    [("name", 5)],
    [("only-name",)],
    ["not-a-pair"],
])
def test_bad_headers_raise_type_error(headers):
    with pytest.raises(TypeError):
        encode_headers(headers)
