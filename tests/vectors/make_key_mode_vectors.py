#!/usr/bin/env python3
"""Computes the key-mode test vectors of src/wire/PROTOCOL.md §9.10 with an implementation
independent of bokbok's C++ one: Noise_NNpsk0_25519_ChaChaPoly_SHA256 written here from the
Noise specification on top of Python's `cryptography` package (X25519, ChaCha20-Poly1305,
Argon2id) and hashlib/hmac. Prints the `key-vector` blocks; tests/key_mode_vectors_test.cpp
checks the C++ code against the copy in PROTOCOL.md. Run: python3 make_key_mode_vectors.py"""
import hashlib
import hmac
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives import serialization

NAME = b"Noise_NNpsk0_25519_ChaChaPoly_SHA256"


def sha256(b):
    return hashlib.sha256(b).digest()


def hkdf(ck, ikm, n):
    temp = hmac.new(ck, ikm, hashlib.sha256).digest()
    outs, prev = [], b""
    for i in range(1, n + 1):
        prev = hmac.new(temp, prev + bytes([i]), hashlib.sha256).digest()
        outs.append(prev)
    return outs


def nonce(n):
    return b"\0" * 4 + struct.pack("<Q", n)


class Cipher:
    def __init__(self, k=None):
        self.k, self.n = k, 0

    def enc(self, ad, pt):
        if self.k is None:
            return pt
        ct = ChaCha20Poly1305(self.k).encrypt(nonce(self.n), pt, ad)
        self.n += 1
        return ct

    def dec(self, ad, ct):
        if self.k is None:
            return ct
        pt = ChaCha20Poly1305(self.k).decrypt(nonce(self.n), ct, ad)
        self.n += 1
        return pt

    def rekey(self):
        self.k = ChaCha20Poly1305(self.k).encrypt(nonce(2**64 - 1), b"\0" * 32, b"")[:32]


class Symmetric:
    def __init__(self, prologue, psk):
        self.h = NAME if len(NAME) <= 32 else sha256(NAME)
        self.ck = self.h
        self.c = Cipher()
        self.mix_hash(prologue)
        # token psk: MixKeyAndHash(psk)
        self.ck, temp_h, temp_k = hkdf(self.ck, psk, 3)
        self.mix_hash(temp_h)
        self.c = Cipher(temp_k)

    def mix_hash(self, data):
        self.h = sha256(self.h + data)

    def mix_key(self, ikm):
        self.ck, temp_k = hkdf(self.ck, ikm, 2)
        self.c = Cipher(temp_k)

    def enc_hash(self, pt):
        ct = self.c.enc(self.h, pt)
        self.mix_hash(ct)
        return ct

    def dec_hash(self, ct):
        pt = self.c.dec(self.h, ct)
        self.mix_hash(ct)
        return pt

    def split(self):
        k1, k2 = hkdf(self.ck, b"", 2)
        return Cipher(k1), Cipher(k2)


def pub(priv):
    return X25519PrivateKey.from_private_bytes(priv).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def dh(priv, peer):
    return X25519PrivateKey.from_private_bytes(priv).exchange(X25519PublicKey.from_public_bytes(peer))


def record(body):
    return struct.pack(">H", len(body)) + body


def preamble(user):
    return b"BOKBOK" + bytes([1, 1, len(user)]) + user


def settings(max_size=64 << 20, heartbeat=0, calls=0, features=0):
    return struct.pack(">HIHIHIHI", 1, max_size, 2, heartbeat, 3, calls, 4, features)


def frame(t, flags, call_id, payload=b""):
    return struct.pack(">BBI", t, flags, call_id) + payload


def handshake(psk, ipre, rpre, ts, iset, rset, ie, re):
    prologue = ipre + rpre
    # message 1: -> psk, e ; payload = u64 ts || settings
    si = Symmetric(prologue, psk)
    e_pub = pub(ie)
    si.mix_hash(e_pub)
    si.mix_key(e_pub)
    m1 = record(e_pub + si.enc_hash(struct.pack(">Q", ts) + iset))
    # the responder reads it
    sr = Symmetric(prologue, psk)
    body = m1[2:]
    sr.mix_hash(body[:32])
    sr.mix_key(body[:32])
    assert sr.dec_hash(body[32:]) == struct.pack(">Q", ts) + iset
    # message 2: <- e, ee ; payload = settings
    r_pub = pub(re)
    sr.mix_hash(r_pub)
    sr.mix_key(r_pub)
    sr.mix_key(dh(re, body[:32]))
    m2 = record(r_pub + sr.enc_hash(rset))
    si.mix_hash(r_pub)
    si.mix_key(r_pub)
    si.mix_key(dh(ie, r_pub))
    assert si.dec_hash(m2[34:]) == rset
    assert si.h == sr.h
    return m1, m2, si.h, si.split()


def hx(b):
    return b.hex()


def main():
    psk = bytes(range(0x20, 0x40))
    ipre, rpre = preamble(b"alice"), preamble(b"")
    ts = 1700000000000
    iset = settings()
    rset = settings(16 << 20, 15000, 64)
    ie = bytes.fromhex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a")
    re = bytes.fromhex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b")
    m1, m2, h, (c_i2r, c_r2i) = handshake(psk, ipre, rpre, ts, iset, rset, ie, re)
    k_i2r, k_r2i = c_i2r.k, c_r2i.k
    ping = frame(6, 0, 0, bytes.fromhex("0102030405060708"))
    pong = frame(7, 0, 0, bytes.fromhex("0102030405060708"))
    close = frame(9, 0, 0)
    rec_ping = record(c_i2r.enc(b"", ping))
    rec_close = record(c_i2r.enc(b"", close))
    rec_pong = record(c_r2i.enc(b"", pong))
    print("```key-vector")
    print("name: key-handshake")
    print("about: user alice connects with the right key; fixed ephemerals and timestamp")
    print("what: key-handshake")
    print("psk:", hx(psk))
    print("initiator-preamble:", hx(ipre))
    print("responder-preamble:", hx(rpre))
    print("timestamp:", ts)
    print("initiator-settings:", hx(iset))
    print("responder-settings:", hx(rset))
    print("initiator-ephemeral:", hx(ie))
    print("responder-ephemeral:", hx(re))
    print("message-1:", hx(m1))
    print("message-2:", hx(m2))
    print("handshake-hash:", hx(h))
    print("initiator-to-responder-key:", hx(k_i2r))
    print("responder-to-initiator-key:", hx(k_r2i))
    print("i2r-frame-0:", hx(ping))
    print("i2r-record-0:", hx(rec_ping))
    print("i2r-frame-1:", hx(close))
    print("i2r-record-1:", hx(rec_close))
    print("r2i-frame-0:", hx(pong))
    print("r2i-record-0:", hx(rec_pong))
    print("```")
    print()
    print("```key-vector")
    print("name: key-handshake-wrong-key")
    print("about: the same message 1 reaching a server that holds another key for alice")
    print("what: key-handshake")
    print("psk:", hx(psk))
    print("responder-psk:", hx(bytes(range(0x21, 0x41))))
    print("initiator-preamble:", hx(ipre))
    print("responder-preamble:", hx(rpre))
    print("timestamp:", ts)
    print("message-1:", hx(m1))
    print("error: authentication failed: unknown user or wrong key")
    print("```")
    print()
    c = Cipher(k_i2r)
    before = c.k
    c.rekey()
    print("```key-vector")
    print("name: key-rekey")
    print("about: Rekey() of the initiator-to-responder key above")
    print("what: rekey")
    print("key:", hx(before))
    print("rekeyed:", hx(c.k))
    print("```")
    print()
    salt = sha256(b"bokbok passphrase v1\0example.org\0alice")[:16]
    k = Argon2id(salt=salt, length=32, iterations=3, lanes=1, memory_cost=262144).derive(
        b"correct horse battery staple")
    print("```key-vector")
    print("name: key-passphrase")
    print("about: a key derived from a passphrase (Argon2id, opslimit 3, memlimit 256 MiB)")
    print("what: passphrase")
    print('passphrase: "correct horse battery staple"')
    print('realm: "example.org"')
    print('user: "alice"')
    print("salt:", hx(salt))
    print("key:", hx(k))
    print("```")


if __name__ == "__main__":
    main()
