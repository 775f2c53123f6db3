#!/usr/bin/env python3
"""One repetition of Orbax's side of `cargo xtask bench --vs-orbax` (section `vs-orbax`).

  python bench_vs_orbax.py DIR BYTES SEED SAVES [numpy|jax]

Builds a tree of 4 float32 arrays (numpy arrays, mutable like the tensors ckpt borrows; or with
`jax`, jax.Arrays on the CPU device, which Orbax's async save need not copy since they are
immutable) of BYTES/4 bytes each (shape
(BYTES/4/4096, 1024), standard normal values from numpy's default_rng(SEED)), then, timed inside
this process (the import of JAX and Orbax is not counted), in DIR:

  sync     a CheckpointManager (enable_async_checkpointing=False, max_to_keep=2,
           enable_background_delete=True) saves the tree SAVES times (steps 1..SAVES) with
           StandardSave: each save's wall time to committed
  async    a second CheckpointManager (async, max_to_keep=2, enable_background_delete=True)
           saves it SAVES times: the time each save() blocks, and its wall time to committed (save() + wait_until_finished())
  restore  a fresh CheckpointManager restores the sync root's latest step with no args, every
           array read into memory (np.asarray), 3 times

and prints one JSON line of lists of seconds: {"sync_s", "async_blocked_s", "async_commit_s",
"restore_s", "bytes"}.
"""
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import orbax.checkpoint as ocp


def main():
  root, size, seed, saves = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
  kind = sys.argv[5] if len(sys.argv) > 5 else "numpy"
  rng = np.random.default_rng(seed)
  per = size // 4 // 4
  tree = {
      f"layer{i}": {"kernel": rng.standard_normal(per, dtype=np.float32).reshape(-1, 1024)}
      for i in range(4)
  }
  if kind == "jax":
    tree = jax.device_put(tree)
    jax.block_until_ready(tree)
  out = {"sync_s": [], "async_blocked_s": [], "async_commit_s": [], "restore_s": []}

  sync_root = os.path.join(root, "sync")
  mngr = ocp.CheckpointManager(
      sync_root,
      options=ocp.CheckpointManagerOptions(
          enable_async_checkpointing=False, max_to_keep=2, enable_background_delete=True
      ),
  )
  for step in range(1, saves + 1):
    t = time.perf_counter()
    mngr.save(step, args=ocp.args.StandardSave(tree))
    mngr.wait_until_finished()
    out["sync_s"].append(time.perf_counter() - t)
  mngr.close()

  async_root = os.path.join(root, "async")
  mngr = ocp.CheckpointManager(
      async_root,
      options=ocp.CheckpointManagerOptions(
          enable_async_checkpointing=True, max_to_keep=2, enable_background_delete=True
      ),
  )
  for step in range(1, saves + 1):
    t = time.perf_counter()
    mngr.save(step, args=ocp.args.StandardSave(tree))
    blocked = time.perf_counter() - t
    mngr.wait_until_finished()
    out["async_blocked_s"].append(blocked)
    out["async_commit_s"].append(time.perf_counter() - t)
  mngr.close()

  del tree
  fresh = ocp.CheckpointManager(sync_root)
  total = 0
  for _ in range(3):
    t = time.perf_counter()
    got = fresh.restore(saves)
    arrays = [np.asarray(got[f"layer{i}"]["kernel"]) for i in range(4)]
    out["restore_s"].append(time.perf_counter() - t)
    total = sum(a.nbytes for a in arrays)
    del got, arrays
  out["bytes"] = total
  print(json.dumps(out), flush=True)


if __name__ == "__main__":
  main()
