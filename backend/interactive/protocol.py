"""Parsing and encoding of the scan WebSocket protocol (docs/protocol.md). Pure functions.

Every way a message can be wrong raises ProtocolError with a code and a readable detail;
nothing else escapes `parse_text` or `parse_binary`.
"""

from __future__ import annotations

import hashlib
import json
import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
MAX_TEXT_BYTES = 64 * 1024
MAX_BINARY_BYTES = 8 * 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_SEQ = 2**53  # what a JavaScript number holds exactly
CLIENT_TYPES = {"ping", "session.open", "prompt", "undo", "redo", "reset", "accept", "session.close", "activity"}


class ProtocolError(ValueError):
    def __init__(self, code: str, detail: str, seq: int | None = None) -> None:
        super().__init__(detail)
        self.code, self.detail, self.seq = code, detail, seq


@dataclass(frozen=True)
class Message:
    type: str
    seq: int | None = None
    session: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = None  # accept with a corrected mask: (bbox lower corner, bits) decoded later
    bbox: tuple[tuple[int, int, int], tuple[int, int, int]] | None = None


def _int(value: Any, name: str, lo: int = 0, hi: int = MAX_SEQ) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError("malformed", f"'{name}' must be an integer in {lo}..{hi}")
    return value


def _index(value: Any, name: str) -> tuple[int, int, int]:
    if not isinstance(value, list) or len(value) != 3:
        raise ProtocolError("malformed", f"'{name}' must be a list of 3 integers [slice, row, col]")
    return tuple(_int(v, name, 0, 100_000) for v in value)  # type: ignore[return-value]


def _box(value: Any) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    if not isinstance(value, list) or len(value) != 2:
        raise ProtocolError("malformed", "'box' must be [[s0, r0, c0], [s1, r1, c1]]")
    lower, upper = _index(value[0], "box"), _index(value[1], "box")
    if not all(a < b for a, b in zip(lower, upper, strict=True)):
        raise ProtocolError("malformed", "'box' upper corner must exceed the lower corner on every axis")
    return lower, upper


def _session(value: Any) -> str:
    """A session id is the UUID string session.opened gave; anything else is refused here, before a
    database lookup could fail on it."""
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) and len(value) <= 64 else _bad_session()
    except ValueError:
        return _bad_session()


def _bad_session() -> str:
    raise ProtocolError("malformed", "'session' must be the session id (a UUID) from session.opened")


def _validated(raw: dict[str, Any]) -> Message:
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("malformed", "messages must be JSON objects with a string 'type'")
    if kind not in CLIENT_TYPES:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:40]!r}")
    seq = _int(raw["seq"], "seq") if raw.get("seq") is not None else None
    data: dict[str, Any] = {}
    session = None
    if kind in {"prompt", "undo", "redo", "reset", "accept", "session.close"}:
        session = _session(raw.get("session"))
        if kind != "session.close" and seq is None:
            raise ProtocolError("malformed", f"'{kind}' needs a 'seq'")
    if kind == "session.open":
        data["label"] = _int(raw.get("label"), "label", 1, 2**63 - 1)
        engine = raw.get("engine")
        if engine is not None and (not isinstance(engine, str) or not 1 <= len(engine) <= 50):
            raise ProtocolError("malformed", "'engine' must be an engine name")
        data["engine"] = engine
        data["annotation"] = _int(raw["annotation"], "annotation", 1, 2**63 - 1) if raw.get("annotation") else None
    elif kind == "prompt":
        point, box = raw.get("point"), raw.get("box")
        if (point is None) == (box is None):
            raise ProtocolError("malformed", "a prompt has exactly one of 'point' or 'box'", seq)
        if point is not None:
            if not isinstance(point, dict) or not isinstance(point.get("positive", True), bool):
                raise ProtocolError("malformed", "'point' must be {\"index\": [s, r, c], \"positive\": bool}", seq)
            data["point"] = {"index": list(_index(point.get("index"), "point.index")),
                             "positive": point.get("positive", True)}
        else:
            lower, upper = _box(box)
            data["box"] = [list(lower), list(upper)]
    elif kind == "activity":
        activity = raw.get("activity")
        if not isinstance(activity, str) or len(activity) > 100:
            raise ProtocolError("malformed", "'activity' must be a short text")
        data["activity"] = activity
    return Message(type=kind, seq=seq, session=session, data=data)


def parse_text(text: str | bytes) -> Message:
    if len(text) > MAX_TEXT_BYTES:
        raise ProtocolError("too_large", f"text messages are limited to {MAX_TEXT_BYTES} bytes")
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("malformed", "messages must be JSON objects") from None
    if not isinstance(raw, dict):
        raise ProtocolError("malformed", "messages must be JSON objects with a string 'type'")
    return _validated(raw)


def parse_binary(frame: bytes, volume_shape: tuple[int, int, int]) -> Message:
    """A binary client frame: an `accept` carrying a corrected mask."""
    if len(frame) > MAX_BINARY_BYTES:
        raise ProtocolError("too_large", f"binary messages are limited to {MAX_BINARY_BYTES} bytes")
    header, payload = split_frame(frame)
    message = _validated(header)
    if message.type != "accept":
        raise ProtocolError("malformed", "only 'accept' may carry a mask", message.seq)
    mask = decode_mask(header, payload, volume_shape)
    return Message(type="accept", seq=message.seq, session=message.session, mask=mask)


def split_frame(frame: bytes) -> tuple[dict[str, Any], bytes]:
    if len(frame) < 4:
        raise ProtocolError("malformed", "binary frame too short")
    (length,) = struct.unpack("<I", frame[:4])
    if length > MAX_HEADER_BYTES or 4 + length > len(frame):
        raise ProtocolError("malformed", "binary frame header length is wrong")
    try:
        header = json.loads(frame[4:4 + length])
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("malformed", "binary frame header is not JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("malformed", "binary frame header must be a JSON object")
    return header, frame[4 + length:]


def decode_mask(header: dict[str, Any], payload: bytes, volume_shape: tuple[int, int, int]) -> np.ndarray:
    """Full-volume boolean mask from a bbox header and zlib(packbits) payload."""
    mask = np.zeros(volume_shape, dtype=bool)
    if header.get("bbox") is None:
        return mask
    lower, upper = _box(header["bbox"])
    if not all(b <= s for b, s in zip(upper, volume_shape, strict=True)):
        raise ProtocolError("malformed", f"bbox {lower}-{upper} exceeds the volume {volume_shape}")
    size = int(np.prod([b - a for a, b in zip(lower, upper, strict=True)]))
    try:
        packed = zlib.decompressobj().decompress(payload, (size + 7) // 8 + 1)
    except zlib.error:
        raise ProtocolError("malformed", "mask payload is not zlib data") from None
    if len(packed) != (size + 7) // 8:
        raise ProtocolError("malformed", f"mask payload holds {len(packed)} bytes, expected {(size + 7) // 8}")
    checksum = header.get("checksum")
    if checksum is not None and checksum != hashlib.sha256(packed).hexdigest():
        raise ProtocolError("malformed", "mask checksum does not match its payload")
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), count=size).astype(bool)
    region = tuple(slice(a, b) for a, b in zip(lower, upper, strict=True))
    mask[region] = bits.reshape([b - a for a, b in zip(lower, upper, strict=True)])
    return mask


def bounding_box(mask: np.ndarray) -> tuple[list[int], list[int]] | None:
    """Lower (inclusive) and upper (exclusive) corner of the set voxels; projections, not argwhere,
    because this runs on every prompt over a whole-body volume."""
    extents = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        if hits.size == 0:
            return None
        extents.append((int(hits[0]), int(hits[-1]) + 1))
    return [lo for lo, _ in extents], [hi for _, hi in extents]


def mask_checksum(mask: np.ndarray) -> str | None:
    """sha256 of the packed bits inside the bounding box: the checksum of a mask frame's payload."""
    box = bounding_box(mask)
    if box is None:
        return None
    region = tuple(slice(a, b) for a, b in zip(*box, strict=True))
    return hashlib.sha256(np.packbits(mask[region].ravel()).tobytes()).hexdigest()


def encode_mask(mask: np.ndarray, header: dict[str, Any]) -> bytes:
    """Binary frame of a mask: only its bounding box travels."""
    header = dict(header)
    header["shape"] = list(mask.shape)
    box = bounding_box(mask)
    if box is None:
        header.update(bbox=None, voxels=0, checksum=None)
        payload = b""
    else:
        region = mask[tuple(slice(a, b) for a, b in zip(*box, strict=True))]
        packed = np.packbits(region.ravel()).tobytes()
        header.update(bbox=[box[0], box[1]], voxels=int(np.count_nonzero(region)),
                      checksum=hashlib.sha256(packed).hexdigest())
        payload = zlib.compress(packed, 1)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<I", len(encoded)) + encoded + payload
