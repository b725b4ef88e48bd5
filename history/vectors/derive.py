#!/usr/bin/env python3
"""Known-answer vectors for Ordeal's digests, derived from the documented byte layout alone.

The layout is the "Byte layout" section of history/src/ledger.rs's module documentation. This
script implements it from that text with hashlib only (no Rust, no postcard library), so that
the replica and the checker can each be checked against an independent third implementation.

    python3 history/vectors/derive.py > history/vectors/digests.json

Operations are written in the JSON form of history::Operation (externally tagged, kebab-case),
so the Rust tests read them with serde.
"""

import hashlib
import json
import sys

# Operation variants in declaration order: the index is the postcard discriminant.
VARIANTS = ["read", "write", "cas", "transfer", "read-all"]

# Two ed25519 public keys (RFC 8032 section 7.1, tests 1 and 2): valid points, as the replica's
# key parser requires.
KEY_1 = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
KEY_2 = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")

I64_MIN = -(2**63)
I64_MAX = 2**63 - 1
U32_MAX = 2**32 - 1


# --- The hashed field list -------------------------------------------------------------------


def u64(value):
    """An integer field: u64 little-endian (an i64 as its two's-complement bits)."""
    return (value % 2**64).to_bytes(8, "little")


def byte_string(data):
    """A byte string field: u64 LE length, then the bytes."""
    return u64(len(data)) + data


def H(tag, *fields):
    """SHA-256 over the tag (a length-prefixed byte string) and the already encoded fields."""
    return hashlib.sha256(byte_string(tag) + b"".join(fields)).digest()


# --- Postcard encoding of a request body ----------------------------------------------------


def varint(value):
    """LEB128: 7 bits per byte, low first, high bit set on every byte but the last."""
    assert value >= 0
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def zigzag(value):
    """An i64 as a zigzag varint: (v << 1) ^ (v >> 63), in 64 bits."""
    assert I64_MIN <= value <= I64_MAX
    return varint(((value << 1) ^ (value >> 63)) % 2**64)


def string(text):
    data = text.encode("utf-8")
    return varint(len(data)) + data


def encode_op(op):
    ((name, fields),) = op.items()
    out = varint(VARIANTS.index(name))
    if name == "read":
        out += string(fields["key"])
    elif name == "write":
        out += string(fields["key"]) + zigzag(fields["value"])
    elif name == "cas":
        out += string(fields["key"]) + zigzag(fields["from"]) + zigzag(fields["to"])
    elif name == "transfer":
        out += string(fields["from"]) + string(fields["to"]) + zigzag(fields["amount"])
    elif name == "read-all":
        out += varint(len(fields["keys"])) + b"".join(string(key) for key in fields["keys"])
    return out


def request_body(client, request, op):
    assert 0 <= client <= U32_MAX and 0 <= request < 2**64
    return varint(client) + varint(request) + encode_op(op)


# --- The digests -----------------------------------------------------------------------------


def request_digest(body):
    return H(b"ordeal/request/v1", byte_string(body))


def batch_digest(request_digests):
    return H(b"ordeal/batch/v1", u64(len(request_digests)), *request_digests)


def block_hash(seq, batch, previous):
    return H(b"ordeal/block/v1", u64(seq), batch, previous)


def genesis_hash(replica_count, primary, key):
    return H(b"ordeal/genesis/v1", u64(replica_count), u64(primary), byte_string(key))


def checkpoint_signing_digest(seq, state, block):
    return H(b"ordeal/checkpoint/v1", u64(seq), state, block)


def sum256(digests):
    total = sum(int.from_bytes(digest, "little") for digest in digests) % 2**256
    return total.to_bytes(32, "little")


def state_digest(seq, store, clients):
    s_kv = sum256(
        H(b"ordeal/kv/v1", byte_string(key.encode("utf-8")), u64(value))
        for key, value in store.items()
    )
    s_clients = sum256(H(b"ordeal/client/v1", u64(c), u64(r)) for c, r in clients)
    return H(b"ordeal/state/v1", u64(seq), s_kv, s_clients)


# --- The cases -------------------------------------------------------------------------------


def request(client, request_id, op):
    return {"client": client, "request": request_id, "op": op}


REQUESTS = [
    request(0, 1, {"read": {"key": "x"}}),
    request(1, 300, {"write": {"key": "x", "value": -1}}),
    request(2, 2, {"cas": {"key": "k", "from": 5, "to": -7}}),
    request(3, 128, {"transfer": {"from": "a0", "to": "a1", "amount": 40}}),
    request(4, 16384, {"read-all": {"keys": ["x", "y", "zé"]}}),
    request(U32_MAX, 2**64 - 1, {"write": {"key": "", "value": I64_MIN}}),
    request(5, 3, {"cas": {"key": "big", "from": I64_MAX, "to": 0}}),
]

BATCHES = [
    ("empty", []),
    ("one request", [REQUESTS[0]]),
    ("several requests", REQUESTS[:5]),
    ("extreme values", REQUESTS[5:]),
]

STATES = [
    ("empty store at slot 0", 0, {}, []),
    ("genesis store with one account", 0, {"z": 3}, []),
    ("one key, one client", 1, {"x": 1}, [(0, 1)]),
    (
        "several keys and a client table",
        7,
        {"a0": 60, "a1": 40, "x": -1, "zé": I64_MAX, "min": I64_MIN},
        [(0, 3), (1, 300), (7, 2**40), (U32_MAX, 2**64 - 1)],
    ),
]

GENESES = [(4, 0, KEY_1), (7, 0, KEY_1), (4, 1, KEY_2)]


def main():
    requests = []
    for case in REQUESTS:
        body = request_body(case["client"], case["request"], case["op"])
        requests.append(dict(case, body=body.hex(), digest=request_digest(body).hex()))

    def digest_of(case):
        return request_digest(request_body(case["client"], case["request"], case["op"]))

    batches = [
        {"name": name, "requests": cases, "digest": batch_digest([digest_of(c) for c in cases]).hex()}
        for name, cases in BATCHES
    ]
    states = [
        {
            "name": name,
            "seq": seq,
            "store": store,
            "clients": [list(pair) for pair in clients],
            "digest": state_digest(seq, store, clients).hex(),
        }
        for name, seq, store, clients in STATES
    ]
    geneses = [
        {"replica_count": n, "primary": p, "key": key.hex(), "hash": genesis_hash(n, p, key).hex()}
        for n, p, key in GENESES
    ]
    # A 3-block chain from the first genesis: one request, several requests, an empty batch.
    previous = genesis_hash(*GENESES[0])
    blocks = []
    for seq, batch in enumerate([batches[1], batches[2], batches[0]], start=1):
        digest = bytes.fromhex(batch["digest"])
        previous = block_hash(seq, digest, previous)
        blocks.append({"seq": seq, "batch_digest": digest.hex(), "hash": previous.hex()})
    chain = {"genesis": genesis_hash(*GENESES[0]).hex(), "blocks": blocks}
    # What a CHECKPOINT's signature is over, for the states and chain above.
    checkpoints = []
    for seq, state, block in [
        (0, states[0]["digest"], chain["genesis"]),
        (3, states[3]["digest"], blocks[2]["hash"]),
        (2**64 - 1, states[1]["digest"], blocks[0]["hash"]),
    ]:
        digest = checkpoint_signing_digest(seq, bytes.fromhex(state), bytes.fromhex(block))
        checkpoints.append(
            {"seq": seq, "state_digest": state, "block_hash": block, "signing_digest": digest.hex()}
        )

    vectors = {
        "about": "Known answers for Ordeal's digests, derived by history/vectors/derive.py from "
        "the byte layout documented in history/src/ledger.rs. Do not edit by hand.",
        "requests": requests,
        "batches": batches,
        "states": states,
        "geneses": geneses,
        "chain": chain,
        "checkpoints": checkpoints,
    }
    json.dump(vectors, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
