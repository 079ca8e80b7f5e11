"""The streamed WADO-RS answer is split into instances whatever the chunk sizes; a cut answer is a fault."""

from __future__ import annotations

import pytest

from backend.pacs.dicomweb import PacsUnavailable, split_multipart


def message(bodies: list[bytes], boundary: bytes = b"b0und4ry") -> bytes:
    parts = b"".join(b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + body + b"\r\n"
                     for body in bodies)
    return parts + b"--" + boundary + b"--\r\n"


def chunked(payload: bytes, size: int):
    return (payload[i:i + size] for i in range(0, len(payload), size))


@pytest.mark.parametrize("size", [1, 3, 7, 64, 10_000])
def test_it_works(size):
    # Bodies that hold CRLFs and dashes, as pixel data does.
    bodies = [b"DICM\r\n--x\r\n" * 5, b"", b"\x00\xff" * 300, b"--b0und4r"]
    assert list(split_multipart(chunked(message(bodies), size), b"b0und4ry")) == bodies


def test_a_cut_answer_is_a_fault_after_the_complete_parts():
    payload = message([b"one", b"two", b"three" * 100])
    received = []
    with pytest.raises(PacsUnavailable, match="ended before"):
        for body in split_multipart(chunked(payload[:-200], 50), b"b0und4ry"):
            received.append(body)
    assert received == [b"one", b"two"]
