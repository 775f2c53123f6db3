#!/usr/bin/env python3
"""Checks that orbax-checkpoint 0.12.8 reads the pytree roots ckpt writes.

  python check_ckpt_pytrees.py OUT_DIR/pytrees.json

OUT_DIR is what `cargo run -p ckpt-manager --example write_pytree_roots -- OUT_DIR` wrote (run by
`cargo xtask interop`). For every root and step listed in pytrees.json:

  * ocp.CheckpointManager(root).all_steps() lists exactly the steps ckpt committed;
  * restore(step) with no args (single-item roots) and restore(step, args=Composite(name=
    StandardRestore())) give back every leaf bit for bit: dtype, shape and bytes of arrays, the
    Python number of scalars, {} / [] / None for empty leaves, dicts and lists as ckpt wrote them;
  * restore(step, args=StandardRestore(abstract_tree)) with the abstract tree built from those
    values (shapes and dtypes) gives the same;
  * on a copy of the root, a CheckpointManager with max_to_keep=1 saves a new step with
    StandardSave and prunes every older step (ckpt's steps included).

Prints one PASS/FAIL line per check and `N passed, M failed`; exits 1 if any failed.
"""
import json
import os
import shutil
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import ml_dtypes  # pylint: disable=unused-import  (registers bfloat16 with numpy)
import jax
import orbax.checkpoint as ocp

PASSED = []
FAILED = []


def check(label, fn):
  try:
    fn()
    PASSED.append(label)
    print(f"PASS {label}", flush=True)
  except Exception as e:  # pylint: disable=broad-except
    FAILED.append(label)
    print(f"FAIL {label}: {type(e).__name__}: {e}", flush=True)


def expect(cond, message):
  if not cond:
    raise AssertionError(message)


def dtype_name(a):
  return "bfloat16" if a.dtype == ml_dtypes.bfloat16 else str(a.dtype)


def lookup(tree, path):
  at = tree
  for k in path:
    if "dict" in k:
      expect(isinstance(at, dict), f"expected a dict at {k}, got {type(at).__name__}")
      at = at[k["dict"]]
    else:
      expect(isinstance(at, (list, tuple)), f"expected a list at {k}, got {type(at).__name__}")
      at = at[k["list"]]
  return at


def name_of(path):
  return ".".join(str(k.get("dict", k.get("list"))) for k in path)


def check_leaves(tree, leaves, what):
  for leaf in leaves:
    name = name_of(leaf["path"])
    got = lookup(tree, leaf["path"])
    kind = leaf["kind"]
    if kind == "array":
      a = np.asarray(got)
      expect(dtype_name(a) == leaf["dtype"], f"{what} {name}: dtype {dtype_name(a)} != {leaf['dtype']}")
      expect(list(a.shape) == leaf["shape"], f"{what} {name}: shape {a.shape} != {leaf['shape']}")
      expect(a.tobytes().hex() == leaf["data_hex"], f"{what} {name}: bytes differ")
    elif kind == "scalar":
      raw = np.frombuffer(bytes.fromhex(leaf["data_hex"]), dtype={"int64": "<i8", "float64": "<f8", "bool": "?"}.get(leaf["dtype"], leaf["dtype"]))[0]
      expect(isinstance(got, (int, float, bool, np.generic, np.ndarray)), f"{what} {name}: {type(got)}")
      g = np.asarray(got)
      expect(g.shape == (), f"{what} {name}: scalar shape {g.shape}")
      expect(np.asarray(raw).astype(g.dtype).tobytes() == g.tobytes() or raw == got, f"{what} {name}: {got!r} != {raw!r}")
    elif kind == "empty_dict":
      expect(got == {} , f"{what} {name}: {got!r} is not {{}}")
    elif kind == "empty_list":
      expect(got == [] or got == (), f"{what} {name}: {got!r} is not []")
    elif kind == "none":
      expect(got is None, f"{what} {name}: {got!r} is not None")
    else:
      raise AssertionError(f"unknown kind {kind}")
  def empty(x):
    return x is None or (isinstance(x, (dict, list, tuple)) and len(x) == 0)
  count = len(jax.tree_util.tree_leaves(tree, is_leaf=empty))
  expect(count == len(leaves), f"{what}: {count} leaves restored, {len(leaves)} written")


def main():
  manifest_path = sys.argv[1]
  spec = json.load(open(manifest_path))
  out_dir = os.path.dirname(os.path.abspath(manifest_path))
  for root_name, root in spec["roots"].items():
    path = os.path.join(out_dir, root_name)
    steps = sorted(int(s) for s in root["steps"])

    def listing(path=path, steps=steps):
      got = ocp.CheckpointManager(path).all_steps()
      expect(sorted(got) == steps, f"all_steps {sorted(got)} != {steps}")
    check(f"{root_name}: CheckpointManager lists ckpt's steps", listing)

    for step, items in root["steps"].items():
      step = int(step)
      names = sorted(items)

      if names == ["default"]:
        def no_args(path=path, step=step, items=items):
          got = ocp.CheckpointManager(path).restore(step)
          check_leaves(got, items["default"], f"restore({step})")
        check(f"{root_name}/{step}: restore() with no args, bit-exact", no_args)

        def with_abstract(path=path, step=step, items=items):
          mngr = ocp.CheckpointManager(path)
          full = mngr.restore(step)
          abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, full)
          got = ocp.CheckpointManager(path).restore(step, args=ocp.args.StandardRestore(abstract))
          check_leaves(got, items["default"], f"restore({step}, StandardRestore(abstract))")
        check(f"{root_name}/{step}: restore(args=StandardRestore(abstract tree)), bit-exact", with_abstract)

      def composite(path=path, step=step, items=items, names=names):
        args = ocp.args.Composite(**{n: ocp.args.StandardRestore() for n in names})
        got = ocp.CheckpointManager(path, item_names=tuple(names)).restore(step, args=args)
        for n in names:
          check_leaves(got[n], items[n], f"restore({step}, Composite)[{n}]")
      check(f"{root_name}/{step}: restore(args=Composite(StandardRestore())), bit-exact", composite)

    if len(root["steps"]) and all(sorted(i) == ["default"] for i in root["steps"].values()):
      def prune(path=path, steps=steps):
        with tempfile.TemporaryDirectory() as tmp:
          copy = os.path.join(tmp, "root")
          shutil.copytree(path, copy)
          mngr = ocp.CheckpointManager(copy, options=ocp.CheckpointManagerOptions(max_to_keep=1))
          new = steps[-1] + 1
          mngr.save(new, args=ocp.args.StandardSave({"x": np.arange(4, dtype=np.float32)}))
          mngr.wait_until_finished()
          got = ocp.CheckpointManager(copy).all_steps()
          expect(sorted(got) == [new], f"after max_to_keep=1 save: {sorted(got)}")
          expect(sorted(os.listdir(copy)) == [str(new)], f"directories left: {sorted(os.listdir(copy))}")
      check(f"{root_name}: Orbax saves beside ckpt's steps and prunes them (max_to_keep=1)", prune)

  print(f"{len(PASSED)} passed, {len(FAILED)} failed", flush=True)
  sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
  main()
