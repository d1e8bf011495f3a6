#!/usr/bin/env python3
"""An independent verifier of kiroku segment files, written from schemas/FORMAT.md.

Needs Python's standard library plus `blake3` and `PyNaCl`.

    verify_segment.py VKEY_FILE SEGMENT [SEGMENT ...]

Segments are verified in order, each continuing the previous one's chain state.
Prints one line per segment: "OK <records>" or "FAIL <offset> <seq or -> <problem>".
Exit status 0 when all verify, 1 otherwise.
"""
import base64
import hashlib
import sys

import blake3
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

MAGIC = b"\x89KRK\r\n\x1a\n"
MAX_PAYLOAD = 16 * 1024 * 1024
DOMAINS = {1: b"kiroku/v1/record\x00", 2: b"kiroku/v1/checkpoint\x00", 3: b"kiroku/v1/seal\x00"}


class Problem(Exception):
    def __init__(self, offset, seq, what):
        super().__init__(what)
        self.offset, self.seq, self.what = offset, seq, what


def b3(*parts):
    h = blake3.blake3()
    for p in parts:
        h.update(p)
    return h.digest()


def leaf(d):
    return hashlib.sha256(b"\x00" + d).digest()


def node(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def push(frontier, size, h):
    """Append leaf hash h to the compact range (list of subtree roots, largest first)."""
    s = size
    while s & 1:
        h = node(frontier.pop(), h)
        s >>= 1
    frontier.append(h)
    return size + 1


def root(frontier):
    if not frontier:
        return hashlib.sha256(b"").digest()
    r = frontier[-1]
    for h in reversed(frontier[:-1]):
        r = node(h, r)
    return r


class NotSignedByKey(Exception):
    """The note has signature lines, none by the verifier's key (FORMAT.md §6)."""


def parse_vkey(text):
    name, key_id_hex, b64 = text.strip().split("+", 2)
    raw = base64.b64decode(b64)
    assert raw[0] == 1 and len(raw) == 33
    return name, bytes.fromhex(key_id_hex), VerifyKey(raw[1:])


def open_note(note, vkey):
    name, key_id, key = vkey
    split = note.index("\n\n")
    body, sigs = note[: split + 1], note[split + 2 :]
    ok = False
    for line in sigs.rstrip("\n").split("\n"):
        if not line.startswith("\u2014 "):
            raise ValueError("bad signature line")
        sig_name, b64 = line[2:].split(" ", 1)
        blob = base64.b64decode(b64)
        if sig_name == name and blob[:4] == key_id:
            key.verify(body.encode(), blob[4:])
            ok = True
    if not ok:
        raise NotSignedByKey()
    lines = body[:-1].split("\n")
    return lines[0], int(lines[1]), base64.b64decode(lines[2])


def verify(data, vkey, state):
    """Verify one sealed segment continuing `state` (or None); return the new state."""
    if len(data) < 69:
        raise Problem(0, None, "TornTail")
    if data[:8] != MAGIC:
        raise Problem(0, None, "BadMagic")
    if int.from_bytes(data[8:10], "little") != 1:
        raise Problem(0, None, "UnsupportedVersion")
    if data[10:12] != b"\x00\x00":
        raise Problem(0, None, "BadHeader")
    chain = data[12:28]
    first_seq = int.from_bytes(data[28:36], "little")
    prev_hash = data[36:68]
    n = data[68]
    if n != bin(first_seq).count("1"):
        raise Problem(0, None, "BadHeader")
    hlen = 69 + 32 * n + 32
    if len(data) < hlen:
        raise Problem(0, None, "TornTail")
    frontier = [data[69 + 32 * i : 101 + 32 * i] for i in range(n)]
    header_hash = data[hlen - 32 : hlen]
    if b3(b"kiroku/v1/header\x00", data[: hlen - 32]) != header_hash:
        raise Problem(0, None, "BadHeader")
    if state is not None:
        if (first_seq, prev_hash, frontier) != (state["next"], state["last"], state["frontier"]):
            raise Problem(0, first_seq, "Discontinuity")
    if first_seq == 0 and prev_hash != bytes(32):
        raise Problem(0, None, "BadHeader")
    nxt, last, size, link = first_seq, prev_hash, first_seq, header_hash
    off, sealed = hlen, False
    while off < len(data):
        if sealed:
            raise Problem(off, None, "DataAfterSeal")
        if len(data) - off < 17:
            raise Problem(off, None, "TornTail")
        head = data[off : off + 13]
        kind, length, seq = head[0], int.from_bytes(head[1:5], "little"), int.from_bytes(head[5:13], "little")
        if b3(b"kiroku/v1/frame-head\x00", head)[:4] != data[off + 13 : off + 17]:
            rest = data[off:]
            raise Problem(off, None, "TornTail" if rest.count(0) == len(rest) else "BadFrameHead")
        if kind not in DOMAINS:
            raise Problem(off, seq, "UnknownFrameKind")
        if length > MAX_PAYLOAD:
            raise Problem(off, seq, "FrameTooLarge")
        end = off + 49 + length + 32
        if end > len(data):
            raise Problem(off, seq, "TornTail")
        prev = data[off + 17 : off + 49]
        payload = data[off + 49 : off + 49 + length]
        stored = data[end - 32 : end]
        if b3(DOMAINS[kind], chain, seq.to_bytes(8, "little"), prev, payload) != stored:
            raise Problem(off, seq, "BadHash")
        if kind == 1:
            if seq != nxt:
                raise Problem(off, seq, "SeqGap")
            if prev != last:
                raise Problem(off, seq, "BrokenLink")
            size = push(frontier, size, leaf(stored))
            last, nxt = stored, nxt + 1
        else:
            if prev != link:
                raise Problem(off, seq, "BrokenLink")
            try:
                origin, cp_size, cp_root = open_note(payload.decode(), vkey)
            except NotSignedByKey:
                raise Problem(off, seq, "SignedByAnotherKey")
            except (ValueError, BadSignatureError, UnicodeDecodeError):
                raise Problem(off, seq, "BadSignature")
            chain_text = "-".join([chain[:4].hex(), chain[4:6].hex(), chain[6:8].hex(), chain[8:10].hex(), chain[10:].hex()])
            if cp_size != nxt or seq != nxt or origin.rsplit("/", 1)[-1] != chain_text or cp_root != root(frontier):
                raise Problem(off, seq, "CheckpointMismatch")
            link, sealed = stored, kind == 3
        off = end
    if not sealed:
        raise Problem(off, None, "NotSealed")
    return {"next": nxt, "last": last, "frontier": frontier}


def main():
    vkey = parse_vkey(open(sys.argv[1]).read())
    state, ok = None, True
    for path in sys.argv[2:]:
        try:
            state = verify(open(path, "rb").read(), vkey, state)
            print(f"OK {state['next']}")
        except Problem as p:
            print(f"FAIL {p.offset} {p.seq if p.seq is not None else '-'} {p.what}")
            ok, state = False, None
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
