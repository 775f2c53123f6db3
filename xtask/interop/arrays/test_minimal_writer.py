#!/usr/bin/env python3
"""Checks that Orbax restores checkpoints whose OCDBT databases ocdbt_minimal_writer.py rewrote.

  python test_minimal_writer.py OUT_DIR WORK_DIR

OUT_DIR is gen_orbax_arrays.py's output. For every OCDBT root there (ocdbt_sync, ocdbt_async,
ocdbt_multifile, ocdbt_zarr3) and every writer variant (zstd or raw; prefix-compressed keys or
whole keys; true or zero statistics; values with the node or in their own file), it copies the root
into WORK_DIR, replaces each step's item database with the minimal one (one data file or two, one
leaf node, one version, no ocdbt.process_<i>/ directory), and checks that

  * tensorstore's ocdbt driver reads the same keys and values as ocdbt_dump.py decodes, and
  * ocp.CheckpointManager(...).restore(step) with no args gives back, bit for bit, the values in
    OUT_DIR/values.json, with the same Python types as restoring the original root gave.

Prints one line per case and exits 1 if any failed.
"""
import json
import os
import shutil
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # pylint: disable=g-import-not-at-top
import ml_dtypes  # pylint: disable=unused-import  (registers bfloat16 with numpy)
import jax
import orbax.checkpoint as ocp
import gen_orbax_arrays
import ocdbt_dump
import ocdbt_minimal_writer

VARIANTS = {
    "zstd": {},
    "raw": {"zstd": False},
    "whole_keys": {"no_key_prefix": True},
    "zero_stats": {"zero_stats": True},
    "values_own_file": {"values_in_own_file": True},
}


def expected_leaves(values, tree_id):
  out = {}
  for rec in values["trees"][tree_id]:
    out[tuple(rec["path"])] = rec
  return out


def check_restored(restored, expected, expected_doc_leaves):
  flat = dict(gen_orbax_arrays.flatten(restored))
  problems = []
  for path, rec in expected.items():
    got = flat.get(path)
    want_type = expected_doc_leaves[path]["restored"]["type"]
    got_type = (f"{type(got).__module__}.{type(got).__qualname__}" if rec["kind"] != "empty"
                else type(got).__name__)
    if got_type != want_type:
      problems.append(f"{path}: type {got_type}, original restore gave {want_type}")
      continue
    if rec["kind"] == "empty":
      continue
    arr = np.asarray(got, dtype=np.dtype(rec["dtype"]) if rec["kind"] == "scalar" else None)
    if (str(arr.dtype) != rec["dtype"] or list(arr.shape) != rec["shape"]
        or arr.tobytes().hex() != rec["data_hex"]):
      problems.append(f"{path}: value differs")
  return problems


def main(argv):
  if len(argv) != 3:
    sys.exit(__doc__)
  out_dir, work_dir = map(os.path.abspath, argv[1:])
  with open(os.path.join(out_dir, "values.json"), encoding="utf-8") as f:
    values = json.load(f)
  failed = 0
  for root in ["ocdbt_sync", "ocdbt_async", "ocdbt_multifile", "ocdbt_zarr3"]:
    with open(os.path.join(out_dir, f"{root}.expected.json"), encoding="utf-8") as f:
      doc = json.load(f)
    for variant, kwargs in VARIANTS.items():
      dst_root = os.path.join(work_dir, f"{root}.{variant}")
      shutil.copytree(os.path.join(out_dir, root), dst_root)
      try:
        for step in doc["steps"]:
          item = os.path.join(dst_root, step, "default")
          _, kvs = ocdbt_dump.read_all(item)
          for name in os.listdir(item):
            if name in ("manifest.ocdbt", "d") or name.startswith("ocdbt.process_"):
              p = os.path.join(item, name)
              shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
          ocdbt_minimal_writer.write_database(item, kvs, **kwargs)
          ocdbt_dump.compare_with_tensorstore(item)
        mgr = ocp.CheckpointManager(dst_root,
                                    options=ocp.CheckpointManagerOptions(read_only=True))
        problems = []
        for step, sdoc in doc["steps"].items():
          restored = mgr.restore(int(step))
          doc_leaves = {tuple(l["path"]): l for l in sdoc["leaves"]}
          problems += check_restored(restored, expected_leaves(values, sdoc["tree"]), doc_leaves)
        mgr.close()
      except Exception as e:  # pylint: disable=broad-except
        problems = [f"{type(e).__name__}: {e}"]
      if problems:
        failed += 1
        print(f"FAIL {root} {variant}: " + "; ".join(problems[:5]))
      else:
        print(f"PASS {root} {variant}")
  print("all passed" if not failed else f"{failed} failed")
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main(sys.argv)
