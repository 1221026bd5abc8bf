"""The spool's on-disk format: frames ``[u32 length][u32 crc32][msgpack payload]``.

Payloads are ``Put`` (an event to publish, with the time it was spooled) and ``Done``
(that ``Put`` is in Kafka). A torn or corrupt tail (a crash mid-write, never
acknowledged) ends the readable part. This format is what a spool left by an older
version holds: change it only with a reader for the old one.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator

import msgspec

from ingest.envelope import Envelope

_HEADER = struct.Struct("<II")
_MAX_FRAME = 64 << 20


class Put(msgspec.Struct, tag="p", array_like=True):
    seq: int
    env: Envelope
    at_ms: int = 0  # when it was spooled (wall clock): the forwarders merge by it


class Done(msgspec.Struct, tag="d", array_like=True):
    seq: int


Frame = Put | Done
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Frame)


def encode_frame(frame: Frame) -> bytes:
    payload = _encoder.encode(frame)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_frames(fd: int, start: int, end: int) -> Iterator[tuple[int, Frame]]:
    """``(offset after frame, frame)`` from ``start`` up to ``end``; stops at a bad frame."""
    pos = start
    chunk = b""
    chunk_start = start
    while pos < end:
        rel = pos - chunk_start
        if len(chunk) - rel < _HEADER.size:
            chunk = os.pread(fd, min(max(1 << 20, _HEADER.size), end - pos), pos)
            chunk_start, rel = pos, 0
            if len(chunk) < _HEADER.size:
                return
        length, crc = _HEADER.unpack_from(chunk, rel)
        if length > _MAX_FRAME or pos + _HEADER.size + length > end:
            return
        body_start = rel + _HEADER.size
        if len(chunk) < body_start + length:
            chunk = os.pread(fd, max(1 << 20, _HEADER.size + length), pos)
            chunk_start, body_start = pos, _HEADER.size
            if len(chunk) < body_start + length:
                return
        payload = chunk[body_start : body_start + length]
        if zlib.crc32(payload) != crc:
            return
        try:
            frame = _decoder.decode(payload)
        except msgspec.DecodeError:
            return
        pos += _HEADER.size + length
        yield pos, frame
