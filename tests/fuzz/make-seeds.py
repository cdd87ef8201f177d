#!/usr/bin/env python3
"""Regenerates the seed corpora of fuzz_frame and fuzz_metadata from the
DRPC wire captures (tests/data/drpc-transcripts).

    tests/fuzz/make-seeds.py [TRANSCRIPT_DIR]

TRANSCRIPT_DIR defaults to $DRPC_TRANSCRIPTS, else tests/data/drpc-transcripts
in the repository. The script owns tests/fuzz/corpus/frame/ and
tests/fuzz/corpus/metadata/: it empties them and writes

  frame/NAME-client, frame/NAME-server
      each direction's whole byte stream (fuzz_frame takes raw streams; it
      derives its chunking from a hash of the input). The drpcmigrate
      prefix of header-unary-small is stripped; the raw stream is kept as
      NAME-client-prefixed (the prefix parses as an unknown kind).
  frame/unary-200KiB-*-head, frame/unary-200KiB-*-tail
      streams above 16 KiB are cut: the first 4 KiB (a 64 KiB frame cut
      short) and everything from the last frame of at least 4 KiB to the end
      (the last frame of a split packet, then CloseSend), so that the
      corpus stays small.
  metadata/NAME-N
      the data of every InvokeMetadata frame, plus a few made by hand in the
      same encoding: empty, a repeated key, binary bytes with NUL, empty
      key and value, and unknown fields.
"""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
BIG = 16 * 1024
HEAD = 4096
PREFIX = b"DRPC!!!1"
KIND_INVOKE_METADATA = 7


def transcript_dir():
    if len(sys.argv) > 1:
        return sys.argv[1]
    env = os.environ.get("DRPC_TRANSCRIPTS")
    if env:
        return env
    return os.path.join(ROOT, "tests", "data", "drpc-transcripts")


def read_streams(path):
    """The client ('>') and server ('<') byte streams of NAME.txt."""
    streams = {">": bytearray(), "<": bytearray()}
    with open(path) as f:
        for line in f:
            if line[:2] in ("> ", "< "):
                streams[line[0]] += bytes.fromhex(line[2:].strip())
    return bytes(streams[">"]), bytes(streams["<"])


def varint(buf, pos):
    value = shift = 0
    for _ in range(10):
        if pos >= len(buf):
            return None, pos
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos
    return None, pos


def frames(buf):
    """(offset, kind, data) of each complete frame until the first short one."""
    out, pos = [], 0
    while pos < len(buf):
        start, control = pos, buf[pos]
        pos += 1
        fields = []
        for _ in range(3):
            v, pos = varint(buf, pos)
            if v is None:
                return out
            fields.append(v)
        length = fields[2]
        if pos + length > len(buf):
            return out
        out.append((start, (control >> 1) & 0x3F, buf[pos : pos + length]))
        pos += length
    return out


def entry(key, value):
    def field(num, data):
        return bytes([num << 3 | 2]) + enc_varint(len(data)) + data

    body = field(1, key) + field(2, value)
    return b"\x0a" + enc_varint(len(body)) + body


def enc_varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def write(dirname, name, data, written):
    path = os.path.join(CORPUS, dirname, name)
    with open(path, "wb") as f:
        f.write(data)
    written.append((os.path.join(dirname, name), len(data)))


def main():
    src = transcript_dir()
    if not os.path.isfile(os.path.join(src, "README.txt")):
        sys.exit("make-seeds: no transcripts in %s" % src)
    for sub in ("frame", "metadata"):
        d = os.path.join(CORPUS, sub)
        os.makedirs(d, exist_ok=True)
        for old in os.listdir(d):
            os.remove(os.path.join(d, old))

    written = []
    names = sorted(f[: -len(".frames.txt")] for f in os.listdir(src) if f.endswith(".frames.txt"))
    for name in names:
        client, server = read_streams(os.path.join(src, name + ".txt"))
        for side, stream in (("client", client), ("server", server)):
            if not stream:
                continue
            if stream.startswith(PREFIX):
                write("frame", "%s-%s-prefixed" % (name, side), stream, written)
                stream = stream[len(PREFIX) :]
            fr = frames(stream)
            if len(stream) <= BIG:
                write("frame", "%s-%s" % (name, side), stream, written)
            else:
                write("frame", "%s-%s-head" % (name, side), stream[:HEAD], written)
                last_big = max(off for off, _, data in fr if len(data) >= HEAD)
                write("frame", "%s-%s-tail" % (name, side), stream[last_big:], written)
            n = 0
            for _, kind, data in fr:
                if kind == KIND_INVOKE_METADATA:
                    write("metadata", "%s-%d" % (name, n), data, written)
                    n += 1

    write("metadata", "empty", b"", written)
    write("metadata", "repeated-key", entry(b"k", b"a") + entry(b"other", b"x") + entry(b"k", b"b"), written)
    write("metadata", "binary", entry(b"bin\x00k\xff", bytes(range(64))) + entry(b"\x00", b"\x00\x00"), written)
    write("metadata", "empty-fields", entry(b"k", b"") + entry(b"", b"v") + b"\x0a\x00", written)
    write("metadata", "unknown-fields", b"\x10\x01\x1a\x02hi\x15\x01\x02\x03\x04" + entry(b"user", b"alice"), written)

    total = sum(n for _, n in written)
    for path, n in written:
        print("%7d  %s" % (n, path))
    print("%7d  total bytes in %d seeds" % (total, len(written)))


if __name__ == "__main__":
    main()
