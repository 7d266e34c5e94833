#!/usr/bin/env python3
"""Writes the seed corpora of key_responder_fuzz and key_initiator_fuzz in
tests/fuzz/corpus/<target>/, following the input layouts described at the top of each
target. Message 1 of the `key-handshake` vector in src/wire/PROTOCOL.md §9.9 (made with the
same key, preambles and clock as the responder target uses) is a raw seed that completes.
Run from anywhere: python3 tests/fuzz/make_key_corpus.py"""
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SPEC = os.path.join(HERE, "..", "..", "src", "wire", "PROTOCOL.md")


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def vector_message1():
    text = open(SPEC).read()
    block = text[text.index("name: key-handshake\n"):]
    return bytes.fromhex(re.search(r"^message-1: ([0-9a-f]+)$", block, re.M).group(1))


SETTINGS = struct.pack(">HIHIHIHI", 1, 64 << 20, 2, 0, 3, 0, 4, 0)
EPHEMERAL = bytes(range(0x40, 0x60))
ORDER8 = bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")


def responder(mode_byte, e, offset_s, flip, settings):
    return bytes([mode_byte]) + e + struct.pack(">hH", offset_s, flip) + settings


def initiator(e, flip, settings):
    return bytes([1]) + e + struct.pack(">H", flip) + settings


m1 = vector_message1()
t = "key_responder_fuzz"
write(t, "raw-vector-message1", bytes([0]) + m1)
write(t, "raw-vector-message1-then-more", bytes([0xfc]) + m1 + b"\x00\x16next record")
write(t, "raw-short-length", bytes([0, 0x00, 0x10]))
write(t, "raw-long-length", bytes([3, 0xff, 0xff]) + b"\x00" * 40)
write(t, "real", responder(1, EPHEMERAL, 0, 0xffff, SETTINGS))
write(t, "real-empty-settings", responder(1, EPHEMERAL, 0, 0xffff, b""))
write(t, "real-flipped-tag", responder(1, EPHEMERAL, 0, 70, SETTINGS))
write(t, "real-stale", responder(1, EPHEMERAL, -121, 0xffff, SETTINGS))
write(t, "real-future", responder(1, EPHEMERAL, 121, 0xffff, SETTINGS))
write(t, "forged-zero-key", responder(2, bytes(32), 0, 0xffff, SETTINGS))
write(t, "forged-order-8-key", responder(2, ORDER8, 0, 0xffff, SETTINGS))

t = "key_initiator_fuzz"
write(t, "real", initiator(EPHEMERAL, 0xffff, SETTINGS))
write(t, "real-empty-settings", initiator(EPHEMERAL, 0xffff, b""))
write(t, "real-flipped-key", initiator(EPHEMERAL, 5, SETTINGS))
write(t, "real-flipped-tag", initiator(EPHEMERAL, 60, SETTINGS))
write(t, "raw-garbage", bytes([0, 0x00, 0x30]) + bytes(range(48)))
write(t, "raw-zero-key", bytes([2, 0x00, 0x30]) + bytes(48))
write(t, "raw-short-length", bytes([0, 0x00, 0x05]) + b"abcde")
