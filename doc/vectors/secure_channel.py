#!/usr/bin/env python3
"""Independent check of the secure-channel test vectors (doc/protocol.md section 12, Appendix A).

Written from the text of section 12 alone, on the `cryptography` package's HKDF-SHA256 and
ChaCha20-Poly1305; it shares no code with the Rust implementation.

    pip install cryptography
    python3 doc/vectors/secure_channel.py                     # print the vectors
    python3 doc/vectors/secure_channel.py doc/protocol.md     # and check that the document has them

It also opens every record it made, and checks that a flipped bit and a record opened under the
wrong number both fail.
"""
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SESSION_KEY = bytes.fromhex("8e52c0c88795069e0061e3fa9308e28b5563731d8ea8f399dd2cfce644205982")
CONTEXTS = {
    "leader-to-follower": b"p2psc/1 channel leader-to-follower\x00",
    "follower-to-leader": b"p2psc/1 channel follower-to-leader\x00",
}
DATA, END = 1, 2
MAX_PLAINTEXT = 2048 - 3 - 16

# (direction, [(type, plaintext), ...]) in record order, numbers from 0.
RECORDS = [
    ("leader-to-follower", [(DATA, b"Hello, follower!"), (DATA, b""), (END, b"")]),
    ("follower-to-leader", [(DATA, b"Hello, leader!"), (DATA, bytes(range(64))), (END, b"")]),
]


def direction_key(info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(SESSION_KEY)


def nonce(number):
    return bytes(4) + number.to_bytes(8, "big")


def seal(key, number, record_type, plaintext):
    assert len(plaintext) <= MAX_PLAINTEXT
    header = bytes([record_type]) + len(plaintext).to_bytes(2, "big")
    return header + ChaCha20Poly1305(key).encrypt(nonce(number), plaintext, header)


def open_record(key, number, record):
    header, body = record[:3], record[3:]
    assert int.from_bytes(header[1:3], "big") + 16 == len(body)
    return header[0], ChaCha20Poly1305(key).decrypt(nonce(number), body, header)


def vectors():
    lines = []
    for direction, records in RECORDS:
        key = direction_key(CONTEXTS[direction])
        lines.append(f"{direction} key  {key.hex()}")
        for number, (record_type, plaintext) in enumerate(records):
            record = seal(key, number, record_type, plaintext)
            assert open_record(key, number, record) == (record_type, plaintext)
            flipped = bytearray(record)
            flipped[len(record) // 2] ^= 0x01
            for bad, at in ((bytes(flipped), number), (record, number + 1)):
                try:
                    open_record(key, at, bad)
                    raise AssertionError("a forged or misnumbered record opened")
                except InvalidTag:
                    pass
            kind = "data" if record_type == DATA else "end"
            lines.append(f"{direction} record {number} ({kind}, {len(plaintext)} bytes)")
            lines.extend(record[i : i + 32].hex() for i in range(0, len(record), 32))
    return lines


def main():
    lines = vectors()
    print("\n".join(lines))
    if len(sys.argv) > 1:
        document = open(sys.argv[1], encoding="utf-8").read()
        missing = [line for line in lines if line not in document]
        if missing:
            sys.exit("not in the document:\n" + "\n".join(missing))
        print(f"all {len(lines)} lines are in {sys.argv[1]}")


if __name__ == "__main__":
    main()
