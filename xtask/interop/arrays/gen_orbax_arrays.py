#!/usr/bin/env python3
"""Has orbax-checkpoint 0.12.8 write checkpoint roots holding ARRAY items, for ckpt's tests.

  python gen_orbax_arrays.py OUT_DIR

Run with the interpreter of a virtual environment holding orbax-checkpoint 0.12.8 and jax[cpu]
(see README.md). OUT_DIR must not exist yet. It receives:

  OUT_DIR/<root>/                 a CheckpointManager root (one per layout x sync/async, below)
  OUT_DIR/<root>.expected.json    what that root holds: options; per step the tree id, every
                                  file, the _METADATA keys in order, and per leaf the param name,
                                  zarr dtype string, fill_value, chunk shape, stored keys and
                                  what `restore()` with no args gave back (checked bit-exact)
  OUT_DIR/values.json             every tree written, once: per leaf dtype, shape and the raw
                                  little-endian C-order bytes as hex (Python scalars too, as the
                                  0-d array Orbax stores), so a Rust test can compare bit-exactly
                                  without Python
  OUT_DIR/SUMMARY.txt             sizes, file counts

Roots (item name `default` in each):
  ocdbt_sync, ocdbt_async     StandardSave, default handler options: OCDBT + zarr v2 (Orbax's
                              default layout). ocdbt_sync has two steps (trees A and B).
  ocdbt_multifile             PyTreeSave with ocdbt_target_data_file_size=8 KiB: the same tree
                              spread over several OCDBT data files
  ocdbt_zarr3                 OCDBT + zarr v3 (PyTreeCheckpointHandler(use_zarr3=True))
  zarr2_sync, zarr2_async     StandardCheckpointHandler(use_ocdbt=False): a zarr v2 directory per
                              leaf
  zarr3_sync, zarr3_async     PyTreeCheckpointHandler(use_ocdbt=False, use_zarr3=True) with
                              PyTreeSave (StandardSave cannot select zarr3; the item's bytes are
                              the same as StandardCheckpointHandler would write, since it
                              delegates to PyTreeCheckpointHandler, only _CHECKPOINT_METADATA
                              names the other handler class)
  raw_ocdbt_deep              not Orbax: an OCDBT database written with tensorstore directly, with
                              small nodes (interior B+tree nodes), 24 commits (version tree nodes)
                              and no compression, to exercise the parts of the format Orbax's
                              settings never produce. Its expected JSON lists every key's value.

Every array leaf is saved with SaveArgs(chunk_byte_size=4096) (big.many_chunks_f32_74x8 with 256)
so the larger arrays span several chunks while the files stay small. Values are deterministic (numpy seed 20240613 / 20240614);
OCDBT data-file names, uuids and timestamps are not.
"""
import json
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts

ORBAX_VERSION = "0.12.8"
CHUNK_BYTE_SIZE = 4096
SMALL_CHUNK_BYTE_SIZE = 256  # for big.many_chunks_f32_74x8 only
MULTIFILE_TARGET_DATA_FILE_SIZE = 8192
RAW_COMMITS = 24


# --- the trees ---------------------------------------------------------------------------------------

def special_floats(dtype, n, rng):
  """n values of a float dtype, starting with the awkward ones (nan, +-inf, -0.0, tiny, max)."""
  info = np.finfo(dtype) if dtype is not ml_dtypes.bfloat16 else ml_dtypes.finfo(dtype)
  head = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, float(info.tiny), float(info.max),
                   float(info.min), 1.0, -1.5], dtype=np.float64).astype(dtype)
  tail = (rng.standard_normal(max(0, n - len(head))) * 10).astype(dtype)
  return np.concatenate([head, tail])[:n]


def special_ints(dtype, n, rng):
  info = np.iinfo(dtype)
  head = np.array([info.min, info.max, 0, 1], dtype=object)
  if info.min < 0:
    head = np.concatenate([head, np.array([-1], dtype=object)])
  tail = rng.integers(info.min, info.max, size=max(0, n - len(head)), dtype=dtype, endpoint=True)
  return np.concatenate([head.astype(dtype), tail])[:n]


def make_tree(seed):
  """A nested pytree of every dtype StandardSave handles, 0-d to 4-d, scalars, lists, odd keys."""
  rng = np.random.default_rng(seed)
  dtypes = {}
  for name, dt in [("int8", np.int8), ("int16", np.int16), ("int32", np.int32),
                   ("int64", np.int64), ("uint8", np.uint8), ("uint16", np.uint16),
                   ("uint32", np.uint32), ("uint64", np.uint64)]:
    dtypes[name] = special_ints(dt, 15, rng).reshape(3, 5)
  for name, dt in [("float16", np.float16), ("bfloat16", ml_dtypes.bfloat16),
                   ("float32", np.float32), ("float64", np.float64)]:
    dtypes[name] = special_floats(dt, 15, rng).reshape(3, 5)
  dtypes["bool"] = (rng.integers(0, 2, size=(3, 5)) == 1)
  for name, dt, part in [("complex64", np.complex64, np.float32),
                         ("complex128", np.complex128, np.float64)]:
    re = special_floats(part, 6, rng)
    im = special_floats(part, 6, rng)[::-1]
    dtypes[name] = (re.astype(dt) + 1j * im.astype(dt)).astype(dt).reshape(2, 3)

  shapes = {
      "d0_f32": np.array(rng.standard_normal(), dtype=np.float32),  # a 0-d ndarray, not a scalar
      "d0_i32": np.array(-123456, dtype=np.int32),
      "d1": rng.standard_normal(7).astype(np.float32),
      "d2": rng.integers(-1000, 1000, size=(4, 6)).astype(np.int32),
      "d3": rng.standard_normal((2, 3, 4)).astype(np.float64),
      "d4": rng.integers(0, 255, size=(2, 3, 2, 5)).astype(np.uint8),
  }

  big = {
      # 7.5 KiB -> chunk_byte_size 4096 halves the largest dim: chunks [24, 40] (3.75 KiB), 2
      # chunks, each over 1024 bytes once compressed, so stored out of line in OCDBT.
      "f32_48x40": rng.standard_normal((48, 40)).astype(np.float32),
      # 7.5 KiB int64, 3-d: chunks [8, 6, 10].
      "i64_8x12x10": rng.integers(-2**40, 2**40, size=(8, 12, 10)).astype(np.int64),
      # bfloat16, 6 KiB: chunks [32, 48].
      "bf16_64x48": rng.standard_normal((64, 48)).astype(ml_dtypes.bfloat16),
      # 4-d, 6 KiB: chunks [4, 4, 8, 12].
      "u16_4x4x8x24": rng.integers(0, 65535, size=(4, 4, 8, 24)).astype(np.uint16),
      # Saved with chunk_byte_size=256 (see save_args_for): 74 = 2 * 37 leaves chunks of [2, 8],
      # 37 of them; chunk indices up to 36 show that chunk keys sort as bytes ("10.0" < "2.0").
      "many_chunks_f32_74x8": rng.standard_normal((74, 8)).astype(np.float32),
  }

  scalars = {
      "py_float": 0.1,
      "py_float_neg_zero": -0.0,
      "py_int": -7,
      "py_int_big": 2**62 + 3,
      "py_bool": True,
  }

  nested = {
      "list": [np.arange(3, dtype=np.int32),
               {"inner": np.full((2, 2), 0.5)},
               [np.array([1, 2], dtype=np.int8), 3.25]],
      # More than ten elements: flattening keeps list order (0, 1, ..., 11), not string order.
      "long_list": [np.array(i * 11, dtype=np.int16) for i in range(12)],
      "deeper": {"a": {"b": {"c": rng.standard_normal(3).astype(np.float32)}}},
  }

  odd_keys = {
      "it's": np.array([1.0], dtype=np.float32),
      'say "hi"': np.array([2.0], dtype=np.float32),
      "with space": np.array([3.0], dtype=np.float32),
      "ünïcödé": np.array([4.0], dtype=np.float32),
  }

  jax_arrays = {
      "f32": jnp.asarray(rng.standard_normal((6, 8)).astype(np.float32)),
      "bf16": jnp.asarray(rng.standard_normal((4, 4)).astype(np.float32)).astype(jnp.bfloat16),
      "i32_32x40": jnp.asarray(rng.integers(-9, 9, size=(32, 40)).astype(np.int32)),  # 2 chunks
  }

  return {
      "dtypes": dtypes,
      "shapes": shapes,
      "big": big,
      "scalars": scalars,
      "nested": nested,
      "odd_keys": odd_keys,
      "jax": jax_arrays,
      "empty": {"none": None, "dict": {}, "list": []},
  }


def make_tree_b(seed):
  """The second step of ocdbt_sync: another structure, some leaves shared by name with tree A."""
  rng = np.random.default_rng(seed)
  return {
      "big": {"f32_48x40": rng.standard_normal((48, 40)).astype(np.float32)},
      "dtypes": {"int32": rng.integers(-50, 50, size=(3, 5)).astype(np.int32)},
      "scalars": {"py_float": 2.5, "py_int": 2**40},
      "only_in_b": [np.arange(4, dtype=np.uint32)],
  }


def write_json(path, doc):
  """Pretty at the top, one line per leaf record or list of scalars: small and still diffable."""
  def enc(obj, indent):
    pad = " " * indent
    if isinstance(obj, dict) and "path" not in obj and obj:
      items = [f"{pad} {json.dumps(k, ensure_ascii=False)}: {enc(v, indent + 1)}"
               for k, v in obj.items()]
      return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and any(isinstance(x, (dict, list)) for x in obj):
      items = [f"{pad} {enc(v, indent + 1)}" for v in obj]
      return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
  with open(path, "w", encoding="utf-8") as f:
    f.write(enc(doc, 0) + "\n")


def leaf_record(value):
  """What a Rust test needs to rebuild the value bit-exactly."""
  if value is None or (isinstance(value, (dict, list)) and not value):
    return {"kind": "empty", "python": type(value).__name__}
  if isinstance(value, bool):
    kind, python = "scalar", "bool"
  elif isinstance(value, int):
    kind, python = "scalar", "int"
  elif isinstance(value, float):
    kind, python = "scalar", "float"
  elif isinstance(value, jax.Array):
    kind, python = "jax.Array", None
  else:
    kind, python = "np.ndarray", None
  arr = np.asarray(value)  # Orbax stores a Python scalar as np.asarray(scalar): bool/int64/float64
  if arr.dtype.byteorder == ">":
    arr = arr.astype(arr.dtype.newbyteorder("<"))
  rec = {"kind": kind, "dtype": str(arr.dtype), "shape": list(arr.shape),
         "data_hex": np.ascontiguousarray(arr).tobytes().hex()}
  if python:
    rec["python"] = python
    rec["python_repr"] = repr(value)
  return rec


def flatten(tree):
  """[(keypath tuple of str, leaf)] in Orbax's order (jax flattening: dict keys sorted)."""
  out = []
  leaves, _ = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: x is None or (isinstance(x, (dict, list)) and not x))
  for path, leaf in leaves:
    names = []
    for k in path:
      if isinstance(k, jax.tree_util.DictKey):
        names.append(str(k.key))
      elif isinstance(k, jax.tree_util.SequenceKey):
        names.append(str(k.idx))
      else:
        raise ValueError(f"unexpected key {k!r}")
    out.append((tuple(names), leaf))
  return out


def save_args_for(tree):
  def one(path, _):
    small = any(getattr(k, "key", None) == "many_chunks_f32_74x8" for k in path)
    return ocp.SaveArgs(chunk_byte_size=SMALL_CHUNK_BYTE_SIZE if small else CHUNK_BYTE_SIZE)
  return jax.tree_util.tree_map_with_path(one, tree)


# --- writing the Orbax roots -------------------------------------------------------------------------

ROOTS = [
    # name, layout, async, steps (tree ids), how
    ("ocdbt_sync", "ocdbt+zarr2", False, ["A", "B"], "standard"),
    ("ocdbt_async", "ocdbt+zarr2", True, ["A"], "standard"),
    ("ocdbt_multifile", "ocdbt+zarr2", False, ["A"], "pytree_multifile"),
    ("ocdbt_zarr3", "ocdbt+zarr3", False, ["A"], "pytree_zarr3_ocdbt"),
    ("zarr2_sync", "zarr2", False, ["A"], "standard_no_ocdbt"),
    ("zarr2_async", "zarr2", True, ["A"], "standard_no_ocdbt"),
    ("zarr3_sync", "zarr3", False, ["A"], "pytree_zarr3"),
    ("zarr3_async", "zarr3", True, ["A"], "pytree_zarr3"),
]


def handler_and_args(how, tree):
  sa = save_args_for(tree)
  if how == "standard":
    return ocp.StandardCheckpointHandler(), ocp.args.StandardSave(tree, save_args=sa)
  if how == "standard_no_ocdbt":
    return (ocp.StandardCheckpointHandler(use_ocdbt=False),
            ocp.args.StandardSave(tree, save_args=sa))
  if how == "pytree_multifile":
    return (ocp.PyTreeCheckpointHandler(),
            ocp.args.PyTreeSave(tree, save_args=sa,
                                ocdbt_target_data_file_size=MULTIFILE_TARGET_DATA_FILE_SIZE))
  if how == "pytree_zarr3":
    return (ocp.PyTreeCheckpointHandler(use_ocdbt=False, use_zarr3=True),
            ocp.args.PyTreeSave(tree, save_args=sa))
  if how == "pytree_zarr3_ocdbt":
    return (ocp.PyTreeCheckpointHandler(use_ocdbt=True, use_zarr3=True),
            ocp.args.PyTreeSave(tree, save_args=sa))
  raise ValueError(how)


def write_root(root_dir, is_async, steps, how, trees):
  for step, tree_id in enumerate(steps):
    handler, args = handler_and_args(how, trees[tree_id])
    mgr = ocp.CheckpointManager(
        root_dir,
        item_handlers=handler,
        options=ocp.CheckpointManagerOptions(enable_async_checkpointing=is_async,
                                             max_to_keep=None),
    )
    mgr.save(step, args=args)
    mgr.wait_until_finished()
    mgr.close()


class ItemStore:
  """Reads one item directory's stored keys, through tensorstore when it is an OCDBT database."""

  def __init__(self, item_dir, use_ocdbt):
    self.item_dir = item_dir
    self.kv = None
    if use_ocdbt:
      self.kv = ts.KvStore.open({
          "driver": "ocdbt",
          "base": {"driver": "file", "path": os.path.abspath(item_dir) + "/"},
      }).result()

  def keys_of(self, param_name):
    """The stored keys of one leaf, relative to its param directory, in byte order."""
    if self.kv is not None:
      prefix = param_name.encode() + b"/"
      keys = self.kv.list(ts.KvStore.KeyRange(prefix, prefix[:-1] + b"0")).result()
      return sorted(k[len(prefix):].decode() for k in keys)
    base = os.path.join(self.item_dir, param_name)
    return sorted(os.path.relpath(os.path.join(d, f), base).replace(os.sep, "/")
                  for d, _, fs in os.walk(base) for f in fs)

  def read(self, param_name, key):
    if self.kv is not None:
      return self.kv.read(f"{param_name}/{key}").result().value
    with open(os.path.join(self.item_dir, param_name, key), "rb") as f:
      return f.read()


def storage_facts(store, param_name, use_zarr3):
  """Chunk shape and dtype string from the stored zarr metadata, and the leaf's stored keys."""
  meta = json.loads(store.read(param_name, "zarr.json" if use_zarr3 else ".zarray"))
  if use_zarr3:
    shard = meta["codecs"][0]["configuration"]
    facts = {"zarr_dtype": meta["data_type"], "fill_value": meta["fill_value"],
             "chunk_grid_shape": meta["chunk_grid"]["configuration"]["chunk_shape"],
             "inner_chunk_shape": shard["chunk_shape"]}
  else:
    facts = {"zarr_dtype": meta["dtype"], "fill_value": meta["fill_value"],
             "chunks": meta["chunks"]}
  facts["keys"] = store.keys_of(param_name)
  return facts


def check_equal(written, restored, where):
  """Bit-exact comparison of a written leaf with what restore() gave back; returns its record."""
  if written is None or (isinstance(written, (dict, list)) and not written):
    if type(restored) is not type(written) or restored != written:
      raise AssertionError(f"{where}: empty {written!r} restored as {restored!r}")
    return {"type": type(restored).__name__, "value": repr(restored)}
  rec = {"type": f"{type(restored).__module__}.{type(restored).__qualname__}"}
  if isinstance(written, (bool, int, float)):
    if type(restored) is not type(written):
      rec["note"] = f"written {type(written).__name__}, restored {type(restored).__name__}"
    ok = (np.asarray(written).tobytes() == np.asarray(restored, dtype=np.asarray(written).dtype).tobytes())
    rec["value"] = repr(restored)
  else:
    r = np.asarray(restored)
    w = np.asarray(written)
    rec["dtype"] = str(r.dtype)
    rec["shape"] = list(r.shape)
    ok = r.dtype == w.dtype and r.shape == w.shape and r.tobytes() == w.tobytes()
    if isinstance(restored, jax.Array):
      rec["sharding"] = type(restored.sharding).__name__
  if not ok:
    raise AssertionError(f"{where}: restored value differs from the written one")
  return rec


def describe_root(out_dir, name, layout, is_async, steps, how, trees):
  root_dir = os.path.join(out_dir, name)
  use_ocdbt = layout.startswith("ocdbt")
  use_zarr3 = layout.endswith("zarr3")
  mgr = ocp.CheckpointManager(root_dir, options=ocp.CheckpointManagerOptions(read_only=True))
  if mgr.all_steps() != list(range(len(steps))):
    raise AssertionError(f"{name}: steps {mgr.all_steps()}")
  doc = {
      "orbax_version": ORBAX_VERSION,
      "root": name,
      "layout": layout,
      "use_ocdbt": use_ocdbt,
      "use_zarr3": use_zarr3,
      "async": is_async,
      "save": how,
      "item": "default",
      "chunk_byte_size": CHUNK_BYTE_SIZE,
      "ocdbt_target_data_file_size": (MULTIFILE_TARGET_DATA_FILE_SIZE
                                      if how == "pytree_multifile" else None),
      "values_file": "values.json",
      "steps": {},
  }
  for step, tree_id in enumerate(steps):
    item_dir = os.path.join(root_dir, str(step), "default")
    restored = mgr.restore(step)  # no args: structure and types come from _METADATA
    restored_flat = dict(flatten(restored))
    store = ItemStore(item_dir, use_ocdbt)
    leaves = []
    for path, value in flatten(trees[tree_id]):
      rec = {"path": list(path), "metadata_key": str(path), "param_name": ".".join(path)}
      empty = value is None or (isinstance(value, (dict, list)) and not value)
      if not empty:
        rec.update(storage_facts(store, rec["param_name"], use_zarr3))
      rec["restored"] = check_equal(value, restored_flat.get(path), f"{name}/{step}/{path}")
      leaves.append(rec)
    with open(os.path.join(item_dir, "_METADATA"), "rb") as f:
      metadata_json = json.loads(f.read())
    doc["steps"][str(step)] = {
        "tree": tree_id,
        "files": sorted(os.path.relpath(os.path.join(d, f), os.path.join(root_dir, str(step)))
                        for d, _, fs in os.walk(os.path.join(root_dir, str(step))) for f in fs),
        "_METADATA_keys": list(metadata_json["tree_metadata"].keys()),
        "leaves": leaves,
    }
  mgr.close()
  write_json(os.path.join(out_dir, f"{name}.expected.json"), doc)


# --- a raw OCDBT database with interior nodes and version tree nodes ---------------------------------

def write_raw_ocdbt(out_dir):
  """Tensorstore directly: tiny nodes, 24 commits, no compression, some inline, some indirect."""
  path = os.path.join(out_dir, "raw_ocdbt_deep")
  os.makedirs(path)
  config = {
      "max_inline_value_bytes": 16,
      "max_decoded_node_bytes": 256,
      "version_tree_arity_log2": 2,
      "compression": None,  # JSON null: manifest and nodes stored uncompressed
  }
  kv = ts.KvStore.open({
      "driver": "ocdbt",
      "base": {"driver": "file", "path": os.path.abspath(path) + "/"},
      "config": config,
  }).result()
  rng = np.random.default_rng(7)
  expected = {}
  for gen in range(RAW_COMMITS):
    txn = ts.Transaction()
    for j in range(3):
      key = f"k{gen:02d}/{'x' * (j * 5)}{j}"
      n = int(rng.integers(1, 40))
      value = bytes(rng.integers(0, 256, size=n, dtype=np.uint8))
      kv.with_transaction(txn)[key] = value
      expected[key] = value
    txn.commit_sync()
  doc = {
      "what": "tensorstore OCDBT database (not Orbax): interior B+tree nodes, version tree nodes,"
              " uncompressed; an initial empty generation 1 (no root), then one per commit",
      "config": config,
      "commits": RAW_COMMITS,
      "keys": {k: v.hex() for k, v in sorted(expected.items())},
  }
  write_json(os.path.join(out_dir, "raw_ocdbt_deep.expected.json"), doc)


# --- main --------------------------------------------------------------------------------------------

def main(argv):
  if len(argv) != 2:
    sys.exit(__doc__)
  out_dir = os.path.abspath(argv[1])
  if os.path.exists(out_dir):
    sys.exit(f"{out_dir} exists; give a new directory")
  if ocp.__version__ != ORBAX_VERSION:
    print(f"warning: orbax-checkpoint {ocp.__version__}, this generator targets {ORBAX_VERSION}",
          file=sys.stderr)
  os.makedirs(out_dir)
  trees = {"A": make_tree(20240613), "B": make_tree_b(20240614)}

  values = {"orbax_version": ORBAX_VERSION, "byte_order": "little-endian, C order", "trees": {}}
  for tree_id, tree in trees.items():
    values["trees"][tree_id] = [dict({"path": list(p), "metadata_key": str(p),
                                      "param_name": ".".join(p)}, **leaf_record(v))
                                for p, v in flatten(tree)]
  write_json(os.path.join(out_dir, "values.json"), values)

  for name, layout, is_async, steps, how in ROOTS:
    write_root(os.path.join(out_dir, name), is_async, steps, how, trees)
    describe_root(out_dir, name, layout, is_async, steps, how, trees)
    print(f"wrote {name}")
  write_raw_ocdbt(out_dir)
  print("wrote raw_ocdbt_deep")

  lines = []
  total = 0
  for entry in sorted(os.listdir(out_dir)):
    p = os.path.join(out_dir, entry)
    if os.path.isdir(p):
      files = [os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs]
      size = sum(os.path.getsize(f) for f in files)
      lines.append(f"{size:>9}  {len(files):>4} files  {entry}/")
    else:
      size = os.path.getsize(p)
      lines.append(f"{size:>9}             {entry}")
    total += size
  lines.append(f"{total:>9}  total")
  with open(os.path.join(out_dir, "SUMMARY.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main(sys.argv)
