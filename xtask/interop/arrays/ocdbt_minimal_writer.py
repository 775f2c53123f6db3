#!/usr/bin/env python3
"""Writes the smallest OCDBT database tensorstore reads: one data file, one leaf node, one version.

  python ocdbt_minimal_writer.py SRC_ITEM_DIR DST_ITEM_DIR [--raw] [--no-key-prefix] [--zero-stats]
                                 [--values-in-own-file]

A prototype of what ckpt's Rust writer must produce, written from docs/orbax-arrays/ocdbt.md alone
(standard library plus `zstandard` unless --raw). It reads every key of SRC_ITEM_DIR's OCDBT
database with ocdbt_dump.py's decoder, copies the item's other files (_METADATA, _sharding,
array_metadatas/, commit_success.txt) and writes the keys again into DST_ITEM_DIR as:

  DST/manifest.ocdbt   one version (generation 1), root = the leaf node below
  DST/d/<32 hex>       the out-of-line values (those over max_inline_value_bytes = 1024), then
                       the single leaf B+tree node holding every key

and no `ocdbt.process_<i>/` directory. test_minimal_writer.py then checks that tensorstore and
Orbax's restore() read it back bit-exactly.

  --raw                 config compression "none": manifest and node uncompressed
  --no-key-prefix       store every key whole (key_prefix_length 0) instead of prefix-compressing
  --zero-stats          write 0 for num_keys / num_tree_bytes / num_indirect_value_bytes
  --values-in-own-file  put the values in one data file and the node in a second one
"""
import os
import secrets
import shutil
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ocdbt_dump  # pylint: disable=g-import-not-at-top

MAX_INLINE_VALUE_BYTES = 1024  # Orbax's setting
MAX_DECODED_NODE_BYTES = 100_000_000  # Orbax's setting
VERSION_TREE_ARITY_LOG2 = 4  # tensorstore's default, which Orbax keeps


def varint(n):
  out = bytearray()
  while True:
    b = n & 0x7F
    n >>= 7
    if n:
      out.append(b | 0x80)
    else:
      out.append(b)
      return bytes(out)


def common_prefix(a, b):
  n = 0
  while n < min(len(a), len(b)) and a[n] == b[n]:
    n += 1
  return n


def envelope(magic, body, zstd):
  """Header (magic u32 BE, length u64 LE, version varint 0, compression varint), body, crc32c."""
  if zstd:
    import zstandard  # pylint: disable=import-outside-toplevel
    body = zstandard.ZstdCompressor(level=3).compress(body)
  head = struct.pack(">I", magic) + b"\0" * 8 + varint(0) + varint(1 if zstd else 0)
  total = len(head) + len(body) + 4
  head = head[:4] + struct.pack("<Q", total) + head[12:]
  data = head + body
  return data + struct.pack("<I", ocdbt_dump.crc32c(data))


def data_file_table(paths):
  """Paths must be sorted; no base paths (all relative to the database directory)."""
  out = bytearray(varint(len(paths)))
  prefixes = [0] + [common_prefix(paths[i - 1], paths[i]) for i in range(1, len(paths))]
  for p in prefixes[1:]:
    out += varint(p)
  for p, pre in zip(paths, prefixes):
    out += varint(len(p) - pre)
  for _ in paths:
    out += varint(0)  # base_path_length
  for p, pre in zip(paths, prefixes):
    out += p[pre:]
  return bytes(out)


def leaf_node(entries, file_index, no_key_prefix, zstd):
  """entries: [(key, inline bytes | (offset, length))], sorted by key."""
  keys = [k for k, _ in entries]
  body = bytearray([0])  # height 0
  indirect_files = sorted({file_index[v[0]] for _, v in entries if isinstance(v, tuple)})
  body += data_file_table([p for p, _ in sorted(file_index.values())] if indirect_files else [])
  body += varint(len(entries))
  prefixes = [0] + [0 if no_key_prefix else common_prefix(keys[i - 1], keys[i])
                    for i in range(1, len(keys))]
  for p in prefixes[1:]:
    body += varint(p)
  for k, p in zip(keys, prefixes):
    body += varint(len(k) - p)
  for k, p in zip(keys, prefixes):
    body += k[p:]
  for _, v in entries:
    body += varint(v[2] if isinstance(v, tuple) else len(v))
  for _, v in entries:
    body.append(1 if isinstance(v, tuple) else 0)
  for _, v in entries:
    if isinstance(v, tuple):
      body += varint(file_index[v[0]][1])
  for _, v in entries:
    if isinstance(v, tuple):
      body += varint(v[1])
  for _, v in entries:
    if not isinstance(v, tuple):
      body += v
  return envelope(ocdbt_dump.BTREE_NODE_MAGIC, bytes(body), zstd)


def manifest(node_path, node_offset, node_length, stats, zstd):
  body = bytearray(secrets.token_bytes(16))  # uuid
  body.append(0)  # manifest_kind single
  body += varint(MAX_INLINE_VALUE_BYTES) + varint(MAX_DECODED_NODE_BYTES)
  body.append(VERSION_TREE_ARITY_LOG2)
  body += varint(1) + struct.pack("<i", 0) if zstd else varint(0)
  body += data_file_table([node_path])
  num_keys, num_tree_bytes, num_indirect = stats
  body += varint(1)  # num_versions
  body += varint(1)  # generation_number
  body.append(0)  # root_height
  body += varint(0) + varint(node_offset) + varint(node_length)  # file id, offset, length
  body += varint(num_keys) + varint(num_tree_bytes) + varint(num_indirect)
  body += struct.pack("<Q", time.time_ns())  # commit_time
  body += varint(0)  # no version tree nodes
  return envelope(ocdbt_dump.MANIFEST_MAGIC, bytes(body), zstd)


def write_database(dst, kvs, *, zstd=True, no_key_prefix=False, zero_stats=False,
                   values_in_own_file=False):
  os.makedirs(os.path.join(dst, "d"), exist_ok=True)
  value_file = b"d/" + secrets.token_hex(16).encode()
  node_file = b"d/" + secrets.token_hex(16).encode() if values_in_own_file else value_file
  # file_index: path -> (path, index in the node's sorted table)
  value_blob = bytearray()
  entries = []
  for key in sorted(kvs):
    value = kvs[key]
    if len(value) <= MAX_INLINE_VALUE_BYTES:
      entries.append((key, value))
    else:
      entries.append((key, (value_file, len(value_blob), len(value))))
      value_blob += value
  file_index = {value_file: (value_file, 0)}
  node = leaf_node(entries, file_index, no_key_prefix, zstd)
  if values_in_own_file:
    with open(os.path.join(dst, value_file.decode()), "wb") as f:
      f.write(value_blob)
    node_offset = 0
    with open(os.path.join(dst, node_file.decode()), "wb") as f:
      f.write(node)
  else:
    node_offset = len(value_blob)
    with open(os.path.join(dst, value_file.decode()), "wb") as f:
      f.write(bytes(value_blob) + node)
  indirect = sum(v[2] for _, v in entries if isinstance(v, tuple))
  stats = (0, 0, 0) if zero_stats else (len(entries), len(node), indirect)
  with open(os.path.join(dst, "manifest.ocdbt"), "wb") as f:
    f.write(manifest(node_file, node_offset, len(node), stats, zstd))


def main(argv):
  args = [a for a in argv[1:] if not a.startswith("--")]
  flags = {a for a in argv[1:] if a.startswith("--")}
  known = {"--raw", "--no-key-prefix", "--zero-stats", "--values-in-own-file"}
  if len(args) != 2 or flags - known:
    sys.exit(__doc__)
  src, dst = args
  if os.path.exists(dst):
    sys.exit(f"{dst} exists")
  _, kvs = ocdbt_dump.read_all(src)
  os.makedirs(dst)
  for name in os.listdir(src):
    if name in ("manifest.ocdbt", "d") or name.startswith("ocdbt.process_"):
      continue
    s = os.path.join(src, name)
    (shutil.copytree if os.path.isdir(s) else shutil.copy2)(s, os.path.join(dst, name))
  write_database(dst, kvs, zstd="--raw" not in flags, no_key_prefix="--no-key-prefix" in flags,
                 zero_stats="--zero-stats" in flags,
                 values_in_own_file="--values-in-own-file" in flags)


if __name__ == "__main__":
  main(sys.argv)
