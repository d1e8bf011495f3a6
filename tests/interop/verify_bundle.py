#!/usr/bin/env python3
"""Verify a kiroku evidence bundle without kiroku.

Written from schemas/FORMAT.md and the bundle's README.txt only. Needs Python's
standard library plus the `blake3` and `PyNaCl` packages.

    verify_bundle.py BUNDLE_DIR [TRUSTED_VKEY_FILE]

signer.vkey and TRUSTED_VKEY_FILE hold one key per line (several after a key
rotation); with TRUSTED_VKEY_FILE, every key of the bundle must be one of its keys.
Exit status 0 when every record verifies, 1 when anything does not, 2 on usage errors.
"""
import base64
import hashlib
import json
import sys
import uuid
from pathlib import Path

import blake3
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf: bytes, index: int, size: int, proof: list, root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def parse_vkey(text: str):
    name, key_id_hex, b64 = text.strip().split("+", 2)
    raw = base64.b64decode(b64)
    if raw[0] != 0x01 or len(raw) != 33:
        raise ValueError("not an Ed25519 signed-note key")
    pub = raw[1:]
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x01" + pub).digest()[:4]
    if key_id.hex() != key_id_hex:
        raise ValueError("key id does not match the key")
    return name, key_id, VerifyKey(pub)


def parse_vkeys(text: str):
    """One key per line; blank lines and '#' comments skipped."""
    keys = [parse_vkey(line) for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if not keys:
        raise ValueError("no key")
    return keys


def open_checkpoint(note: str, vkeys):
    split = note.index("\n\n")
    body, sigs = note[: split + 1], note[split + 2 :]
    if not sigs.endswith("\n"):
        raise ValueError("note does not end with a newline")
    ok = False
    for line in sigs[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise ValueError("signature line does not start with an em dash")
        sig_name, b64 = line[2:].split(" ", 1)
        blob = base64.b64decode(b64)
        for name, key_id, key in vkeys:
            if sig_name == name and blob[:4] == key_id:
                key.verify(body.encode(), blob[4:])  # raises BadSignatureError
                ok = True
    if not ok:
        raise ValueError("no signature by the log's keys")
    lines = body[:-1].split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2])
    return origin, size, root


def parse_proof(text: str):
    lines = text.split("\n")
    if lines[0] != "c2sp.org/tlog-proof@v1":
        raise ValueError("not a tlog-proof")
    i = 1
    if lines[i].startswith("extra "):
        i += 1
    if not lines[i].startswith("index "):
        raise ValueError("missing index line")
    index = int(lines[i][6:])
    i += 1
    hashes = []
    while lines[i] != "":
        hashes.append(base64.b64decode(lines[i]))
        i += 1
    checkpoint = "\n".join(lines[i + 1 :])
    return index, hashes, checkpoint


def record_hash(chain_id: str, seq: int, prev: bytes, payload: bytes) -> bytes:
    h = blake3.blake3()
    h.update(b"kiroku/v1/record\x00")
    h.update(uuid.UUID(chain_id).bytes)
    h.update(seq.to_bytes(8, "little"))
    h.update(prev)
    h.update(payload)
    return h.digest()


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    bundle = Path(sys.argv[1])
    vkeys = parse_vkeys((bundle / "signer.vkey").read_text())
    if len(sys.argv) == 3:
        # The whole key, not only its name and 4-byte id, must be trusted.
        trusted = [(n, i, bytes(k)) for n, i, k in parse_vkeys(Path(sys.argv[2]).read_text())]
        untrusted = [n for n, i, k in vkeys if (n, i, bytes(k)) not in trusted]
        if untrusted:
            print(f"FAIL signer.vkey holds a key that is not trusted: {untrusted[0]}")
            return 1
    index = json.loads((bundle / "index.json").read_text())
    failures = 0
    for e in index["records"]:
        where = f"record {e['record_id']} (chain {e['chain_id']} seq {e['seq']})"
        try:
            payload = (bundle / e["record"]).read_bytes()
            rec = json.loads(payload)
            if (rec["record_id"], rec["chain_id"], rec["seq"]) != (e["record_id"], e["chain_id"], e["seq"]):
                raise ValueError("record fields differ from the index")
            h = record_hash(e["chain_id"], e["seq"], bytes.fromhex(e["prev_hash"]), payload)
            if h.hex() != e["hash"]:
                raise ValueError("chain hash does not match the record bytes")
            index_no, hashes, checkpoint = parse_proof((bundle / e["proof"]).read_text())
            if index_no != e["seq"]:
                raise ValueError("proof index differs from seq")
            origin, size, root = open_checkpoint(checkpoint, vkeys)
            if origin.rsplit("/", 1)[-1] != e["chain_id"]:
                raise ValueError(f"checkpoint origin {origin} is not this chain")
            if not verify_inclusion(leaf_hash(h), index_no, size, hashes, root):
                raise ValueError("inclusion proof does not verify")
            print(f"OK   {where}: included in a signed checkpoint of size {size}")
        except (ValueError, KeyError, OSError, BadSignatureError) as err:
            failures += 1
            print(f"FAIL {where}: {err}")
    print(f"{len(index['records']) - failures} of {len(index['records'])} records verified")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
