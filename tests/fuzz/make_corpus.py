#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/ (small valid inputs, and a few
invalid ones), following PROTOCOL.md. Run from anywhere: python3 tests/fuzz/make_corpus.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

HELLO, REQUEST, RESPONSE, ERROR, CANCEL, PING, PONG, GOAWAY, CLOSE = range(1, 10)
MORE, CONTINUED = 1, 2
STREAM, REPLY_STREAM, STREAM_END, CREDIT, REPLY_CREDIT = range(11, 16)


def frame(t, flags, call_id, payload=b""):
    return struct.pack(">HBBI", 6 + len(payload), t, flags, call_id) + payload


def message(fields):
    return struct.pack(">I", len(fields)) + b"".join(
        struct.pack(">I", len(f)) + f for f in fields)


def settings(max_size=64 << 20, heartbeat=0, calls=0, features=0):
    return struct.pack(">HIHIHIHI", 1, max_size, 2, heartbeat, 3, calls, 4, features)


def code(c, text):
    return struct.pack(">H", c) + text


def fragments(t, call_id, data, piece):
    """`data` cut into pieces of `piece` bytes, flagged as PROTOCOL.md §4.3 says."""
    out = b""
    for at in range(0, max(len(data), 1), piece):
        flags = (CONTINUED if at else 0) | (MORE if len(data) - at > piece else 0)
        out += frame(t, flags, call_id, data[at:at + piece])
    return out


def preamble(mode=0, user=b""):
    return b"BOKBOK" + bytes([1, mode, len(user)]) + user


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# frame_fuzz: byte 0 picks the chunk size, the rest is the record stream.
conversation = (frame(HELLO, 0, 0, settings(1 << 20, 15000, 64))
                + frame(REQUEST, 0, 1, message([b"ping", b"hi"]))
                + frame(RESPONSE, 0, 1, message([b"pong", b"hi"]))
                + frame(ERROR, 0, 2, code(2, b"no such method: frobnicate"))
                + frame(CANCEL, 0, 3)
                + frame(PING, 0, 0, bytes(range(1, 9)))
                + frame(PONG, 0, 0, bytes(range(1, 9)))
                + frame(GOAWAY, 0, 5, code(7, b"server stopping"))
                + frame(CLOSE, 0, 0))
write("frame_fuzz", "conversation-whole", b"\x00" + conversation)
write("frame_fuzz", "conversation-drip", b"\x01" + conversation)
big = message([b"echo", bytes(range(256)) + b"x" * 100])
a = fragments(REQUEST, 7, big, 100)
b = fragments(RESPONSE, 7, message([b"r" * 150]), 60)
interleaved = b""
# Interleave the two messages' frames record by record.
def records(s):
    out = []
    while s:
        n = 2 + struct.unpack(">H", s[:2])[0]
        out.append(s[:n])
        s = s[n:]
    return out
ra, rb = records(a), records(b)
for i in range(max(len(ra), len(rb))):
    interleaved += (ra[i] if i < len(ra) else b"") + (rb[i] if i < len(rb) else b"")
write("frame_fuzz", "interleaved-fragments", b"\x07" + interleaved)
too_large = fragments(REQUEST, 9, message([b"z" * 700]), 200) + frame(REQUEST, 0, 9, message([b"ok"]))
write("frame_fuzz", "too-large-then-reuse", b"\x03" + too_large)
cancelled = (frame(REQUEST, MORE, 4, message([b"abcdef"])[:6]) + frame(CANCEL, 0, 4)
             + frame(REQUEST, CONTINUED, 4, message([b"abcdef"])[6:]))
write("frame_fuzz", "cancel-mid-message", b"\x05" + cancelled)
write("frame_fuzz", "hello-unknown-setting",
      b"\x02" + frame(HELLO, 0, 0, struct.pack(">HIHI", 99, 0x12345678, 1, 1 << 17)))
write("frame_fuzz", "unknown-type", b"\x00" + frame(PING, 0, 0) + frame(16, 0, 5))
write("frame_fuzz", "deadline-request",
      b"\x00" + frame(REQUEST, 0x04, 3, struct.pack(">I", 1500) + struct.pack(">II", 1, 4) + b"ping"))
write("frame_fuzz", "deadline-fragmented",
      b"\x03" + frame(REQUEST, 0x04 | MORE, 5, struct.pack(">I", 250) + struct.pack(">II", 1, 600))
      + frame(REQUEST, CONTINUED, 5, b"z" * 600))
write("frame_fuzz", "notify-fragmented",
      b"\x01" + frame(10, MORE, 1, struct.pack(">II", 1, 700) + b"n" * 100)
      + frame(10, CONTINUED, 1, b"n" * 600) + frame(10, 0, 2, struct.pack(">I", 0)))
# Streams (PROTOCOL.md §12): a stream call opened with STREAM|DEADLINE and its credit,
# a fragmented stream message, stream_end, the responder's reply_credit, reply_stream
# messages and the answer.
stream_call = (frame(REQUEST, 0x08 | 0x04, 5, struct.pack(">I", 2000) + message([b"chat"]))
               + frame(CREDIT, 0, 5, struct.pack(">II", 64, 1 << 20))
               + frame(REPLY_CREDIT, 0, 5, struct.pack(">II", 2, 300))
               + fragments(STREAM, 5, message([b"s" * 250]), 90)
               + frame(REPLY_STREAM, 0, 5, message([b"hello"]))
               + fragments(REPLY_STREAM, 5, message([b"r" * 200]), 120)
               + frame(STREAM_END, 0, 5)
               + frame(RESPONSE, 0, 5, message([])))
write("frame_fuzz", "stream-call", b"\x00" + stream_call)
write("frame_fuzz", "stream-call-drip", b"\x05" + stream_call)
# File descriptors (§13): counts after the deadline, on a request, a notification and a
# fragmented stream message.
fds = (frame(REQUEST, 0x04 | 0x10, 6, struct.pack(">IB", 1000, 2) + message([b"put", b"log"]))
       + frame(10, 0x10, 1, b"\x01" + message([b"fd"]))
       + frame(STREAM, 0x10 | MORE, 5, b"\xfd" + message([b"x" * 100])[:50])
       + frame(STREAM, CONTINUED, 5, message([b"x" * 100])[50:]))
write("frame_fuzz", "fds-messages", b"\x00" + fds)
write("frame_fuzz", "unknown-continuation", b"\x00" + frame(REQUEST, CONTINUED, 9, b"abcd"))

# message_fuzz: message bytes alone.
for name, fields in [("ping-hi", [b"ping", b"hi"]), ("empty", []),
                     ("binary", [b"", b"\x00\xff"]),
                     ("echo", [b"echo", bytes(range(256))]),
                     ("many-fields", [bytes([i]) * i for i in range(20)])]:
    write("message_fuzz", name, message(fields))
write("message_fuzz", "huge-count", bytes.fromhex("ffffffff00000000"))

# preamble_fuzz: byte 0 = n, then n chunk-size bytes, then the stream.
write("preamble_fuzz", "plain", b"\x00" + preamble())
write("preamble_fuzz", "plain-drip", b"\x01\x00" + preamble() + frame(HELLO, 0, 0, settings()))
write("preamble_fuzz", "key-alice", b"\x03\x02\x05\x01" + preamble(1, b"alice") + b"\x00\x06")
write("preamble_fuzz", "banner", b"\x02\x03\x00" + b"Welcome to host\n$ ")
write("preamble_fuzz", "version-2", b"\x00" + b"BOKBOK\x02\x00\x00")
write("preamble_fuzz", "plain-with-user", b"\x01\x04" + b"BOKBOK\x01\x00\x03bob")
