"""Property-based fuzzing of the message parser: any input gives a Message or a ProtocolError."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from backend.interactive import protocol

SHAPE = (16, 12, 10)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(protocol.CLIENT_TYPES) + ["bogus", ""])},
    optional={"seq": json_values | st.integers(0, 10), "session": json_values | st.just("a" * 36),
              "point": json_values | st.fixed_dictionaries({"index": st.lists(st.integers(-5, 20), max_size=4),
                                                            "positive": json_values}),
              "box": json_values, "label": json_values | st.integers(1, 5), "engine": json_values,
              "annotation": json_values, "activity": json_values},
)


def _parses_or_refuses(text) -> None:
    try:
        message = protocol.parse_text(text)
    except protocol.ProtocolError as error:
        assert error.code in {"malformed", "unknown_type", "too_large"}
        assert error.detail
    else:
        assert message.type in protocol.CLIENT_TYPES


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_parser(raw):
    _parses_or_refuses(raw)


@settings(max_examples=600, deadline=None)
@given(message_like)
def test_message_shaped_json_is_validated(raw):
    _parses_or_refuses(json.dumps(raw))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_binary_frames_never_crash(raw):
    try:
        protocol.parse_binary(raw, SHAPE)
    except protocol.ProtocolError as error:
        assert error.code in {"malformed", "unknown_type", "too_large"}


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.binary(max_size=64))
def test_frames_with_lying_lengths_are_refused(length, tail):
    import struct

    try:
        protocol.parse_binary(struct.pack("<I", length) + tail, SHAPE)
    except protocol.ProtocolError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**31))
def test_mask_frames_round_trip(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random(SHAPE) > rng.random()
    frame = protocol.encode_mask(mask, {"type": "accept", "session": "5e55105e-0000-4000-8000-000000000000", "seq": 3})
    message = protocol.parse_binary(frame, SHAPE)
    assert message.type == "accept" and message.seq == 3
    assert np.array_equal(message.mask, mask)


def test_a_zip_bomb_payload_is_refused_without_inflating_it():
    import struct
    import zlib

    header = json.dumps({"type": "accept", "session": "5e55105e-0000-4000-8000-000000000000", "seq": 1, "bbox": [[0, 0, 0], [2, 2, 2]]}).encode()
    bomb = zlib.compress(b"\xff" * 50_000_000)
    try:
        protocol.parse_binary(struct.pack("<I", len(header)) + header + bomb, SHAPE)
    except protocol.ProtocolError as error:
        assert "expected" in error.detail
    else:
        raise AssertionError("an oversized payload must be refused")
