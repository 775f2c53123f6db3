#!/usr/bin/env python3
"""Reads Orbax ARRAY items without Orbax or tensorstore, and checks them against values.json.

  python read_orbax_item.py OUT_DIR     # every root gen_orbax_arrays.py wrote there
  python read_orbax_item.py ITEM_DIR    # one item directory: prints each leaf

A reference for ckpt's Rust reader, written from docs/orbax-arrays/*.md: it reads `_METADATA` for
the leaves, finds each leaf's zarr array (a directory `<param name>/` or, with OCDBT, the keys
`<param name>/...` of the database decoded by ocdbt_dump.py), parses `.zarray` (zarr v2) or
`zarr.json` (zarr v3 with one sharding_indexed codec), decompresses each chunk (zstd), assembles
the C-order array and, given OUT_DIR, compares it byte for byte with values.json. Needs numpy,
ml_dtypes (bfloat16) and zstandard.
"""
import ast
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ml_dtypes  # pylint: disable=g-import-not-at-top
import numpy as np
import ocdbt_dump

ZARR2_DTYPES = {
    "|b1": np.bool_, "|i1": np.int8, "<i2": np.int16, "<i4": np.int32, "<i8": np.int64,
    "|u1": np.uint8, "<u2": np.uint16, "<u4": np.uint32, "<u8": np.uint64, "<f2": np.float16,
    "bfloat16": ml_dtypes.bfloat16, "<f4": np.float32, "<f8": np.float64, "<c8": np.complex64,
    "<c16": np.complex128,
}
ZARR3_DTYPES = {
    "bool": np.bool_, "int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
    "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64,
    "float16": np.float16, "bfloat16": ml_dtypes.bfloat16, "float32": np.float32,
    "float64": np.float64, "complex64": np.complex64, "complex128": np.complex128,
}


class ItemFiles:
  """The item's key space: files under the item directory, or the OCDBT database's keys."""

  def __init__(self, item_dir):
    self.item_dir = item_dir
    self.kvs = None
    if os.path.exists(os.path.join(item_dir, "manifest.ocdbt")):
      _, self.kvs = ocdbt_dump.read_all(item_dir)

  def get(self, key):
    if self.kvs is not None:
      return self.kvs.get(key.encode())
    path = os.path.join(self.item_dir, *key.split("/"))
    if not os.path.isfile(path):
      return None
    with open(path, "rb") as f:
      return f.read()


def zstd(data):
  return ocdbt_dump.zstd_decompress(data)


def chunk_grid(shape, chunks):
  """Every chunk's grid index, C order."""
  counts = [-(-s // c) for s, c in zip(shape, chunks)]
  return list(np.ndindex(*counts)) if counts else [()]


def assemble(shape, chunks, dtype, read_chunk):
  """read_chunk(grid index) -> bytes of one full chunk (C order). Edge chunks are cut to shape."""
  out = np.empty(shape, dtype=dtype)
  for idx in chunk_grid(shape, chunks):
    raw = read_chunk(idx)
    block = np.frombuffer(raw, dtype=dtype).reshape(chunks)
    sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, chunks, shape))
    out[sl] = block[tuple(slice(0, x.stop - x.start) for x in sl)]
  return out


def read_zarr2(files, name):
  meta = json.loads(files.get(f"{name}/.zarray"))
  assert meta["zarr_format"] == 2 and meta["order"] == "C" and meta["filters"] is None
  dtype = np.dtype(ZARR2_DTYPES[meta["dtype"]])
  sep = meta.get("dimension_separator", ".")
  comp = meta["compressor"]

  def read_chunk(idx):
    key = sep.join(str(i) for i in idx) if idx else "0"
    data = files.get(f"{name}/{key}")
    if data is None:
      raise ValueError(f"{name}: chunk {key} missing")
    if comp is None:
      return data
    assert comp["id"] == "zstd", comp
    return zstd(data)

  return assemble(tuple(meta["shape"]), tuple(meta["chunks"]), dtype, read_chunk)


def read_zarr3(files, name):
  meta = json.loads(files.get(f"{name}/zarr.json"))
  assert meta["zarr_format"] == 3 and meta["node_type"] == "array"
  assert meta["chunk_key_encoding"] == {"name": "default"}
  dtype = np.dtype(ZARR3_DTYPES[meta["data_type"]])
  shard_shape = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
  (codec,) = meta["codecs"]
  assert codec["name"] == "sharding_indexed"
  cfg = codec["configuration"]
  inner = tuple(cfg["chunk_shape"])
  assert cfg.get("index_location", "end") == "end"
  assert [c["name"] for c in cfg["index_codecs"]] == ["bytes", "crc32c"]
  inner_codecs = [c["name"] for c in cfg["codecs"]]
  assert inner_codecs in (["bytes"], ["bytes", "zstd"]), inner_codecs
  per_shard = [s // i for s, i in zip(shard_shape, inner)]
  n_inner = int(np.prod(per_shard)) if per_shard else 1

  def read_shard(idx):
    key = "c" + "".join(f"/{i}" for i in idx)
    data = files.get(f"{name}/{key}")
    if data is None:
      raise ValueError(f"{name}: shard {key} missing")
    index = data[-(16 * n_inner + 4):-4]
    (crc,) = struct.unpack("<I", data[-4:])
    if ocdbt_dump.crc32c(index) != crc:
      raise ValueError(f"{name}/{key}: shard index crc32c mismatch")
    entries = struct.unpack(f"<{2 * n_inner}Q", index)

    def read_inner(j):
      off, n = entries[2 * j], entries[2 * j + 1]
      if off == n == 2**64 - 1:
        raise ValueError(f"{name}/{key}: inner chunk {j} missing")
      raw = data[off:off + n]
      return zstd(raw) if "zstd" in inner_codecs else raw

    flat = {}
    for j, inner_idx in enumerate(np.ndindex(*per_shard) if per_shard else [()]):
      flat[inner_idx] = read_inner(j)
    return assemble(shard_shape, inner, dtype, lambda i: flat[i]).tobytes()

  return assemble(tuple(meta["shape"]), shard_shape, dtype, read_shard)


def read_item(item_dir):
  """[(keypath tuple, metadata entry, value)]: value is np.ndarray, or None for empty leaves."""
  with open(os.path.join(item_dir, "_METADATA"), encoding="utf-8") as f:
    meta = json.load(f)
  files = ItemFiles(item_dir)
  out = []
  for key, entry in meta["tree_metadata"].items():
    path = ast.literal_eval(key)  # the key is the Python repr of a tuple of str
    names = tuple(k["key"] for k in entry["key_metadata"])
    assert names == path, (names, path)
    vm = entry["value_metadata"]
    if vm["skip_deserialize"]:
      out.append((path, vm, None))
      continue
    name = ".".join(path)
    arr = read_zarr3(files, name) if meta["use_zarr3"] else read_zarr2(files, name)
    out.append((path, vm, arr))
  return out


def check_out_dir(out_dir):
  with open(os.path.join(out_dir, "values.json"), encoding="utf-8") as f:
    values = json.load(f)
  failed = 0
  for fname in sorted(os.listdir(out_dir)):
    if not fname.endswith(".expected.json") or fname.startswith("raw_"):
      continue
    with open(os.path.join(out_dir, fname), encoding="utf-8") as f:
      doc = json.load(f)
    for step, sdoc in doc["steps"].items():
      want = {tuple(r["path"]): r for r in values["trees"][sdoc["tree"]]}
      got = read_item(os.path.join(out_dir, doc["root"], step, "default"))
      problems = []
      if [p for p, _, _ in got] != [tuple(r["path"]) for r in values["trees"][sdoc["tree"]]]:
        problems.append("leaf order in _METADATA differs from the tree's flattening order")
      for path, vm, arr in got:
        rec = want[path]
        if arr is None:
          if rec["kind"] != "empty":
            problems.append(f"{path}: skipped but not empty")
          continue
        if vm["value_type"] != rec["kind"]:
          problems.append(f"{path}: value_type {vm['value_type']} != {rec['kind']}")
        if (str(arr.dtype) != rec["dtype"] or list(arr.shape) != rec["shape"]
            or arr.tobytes().hex() != rec["data_hex"]):
          problems.append(f"{path}: value differs")
      if problems:
        failed += 1
        print(f"FAIL {doc['root']}/{step}: " + "; ".join(problems[:5]))
      else:
        print(f"PASS {doc['root']}/{step}: {len(got)} leaves bit-exact")
  sys.exit(1 if failed else 0)


def main(argv):
  if len(argv) != 2:
    sys.exit(__doc__)
  target = argv[1]
  if os.path.exists(os.path.join(target, "values.json")):
    check_out_dir(target)
    return
  for path, vm, arr in read_item(target):
    desc = "(empty)" if arr is None else f"{arr.dtype} {list(arr.shape)}"
    print(f"{str(path):<50} {vm['value_type']:<12} {desc}")


if __name__ == "__main__":
  main(sys.argv)
