#!/usr/bin/env python3
"""One repetition of Orbax's side of `cargo xtask bench` (section `orbax`).

  python bench_orbax.py ROOT STEP BYTES SEED

Builds a tree of 4 float32 arrays of BYTES/4 bytes each (shape (BYTES/4/4096, 1024), standard
normal values from numpy's default_rng(SEED)), then, timed inside this process (the import of
JAX and Orbax is not counted):

  save     ocp.CheckpointManager(ROOT).save(STEP, args=StandardSave(tree)) and
           wait_until_finished(), with enable_async_checkpointing=False: wall time to committed
  restore  a fresh CheckpointManager(ROOT).restore(STEP) with no args, every array read into
           memory (np.asarray)

and prints one JSON line {"save_s": ..., "restore_s": ..., "bytes": ...}. The root is Orbax's
default layout (OCDBT + zarr v2, one chunk per array), which the bench then restores with ckpt.
"""
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import orbax.checkpoint as ocp


def main():
  root, step, size, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
  rng = np.random.default_rng(seed)
  per = size // 4 // 4
  tree = {f"layer{i}": {"kernel": rng.standard_normal(per, dtype=np.float32).reshape(-1, 1024)} for i in range(4)}
  options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
  mngr = ocp.CheckpointManager(root, options=options)
  t = time.perf_counter()
  mngr.save(step, args=ocp.args.StandardSave(tree))
  mngr.wait_until_finished()
  save_s = time.perf_counter() - t
  mngr.close()
  del tree
  fresh = ocp.CheckpointManager(root)
  t = time.perf_counter()
  got = fresh.restore(step)
  arrays = [np.asarray(got[f"layer{i}"]["kernel"]) for i in range(4)]
  restore_s = time.perf_counter() - t
  total = sum(a.nbytes for a in arrays)
  print(json.dumps({"save_s": save_s, "restore_s": restore_s, "bytes": total}), flush=True)


if __name__ == "__main__":
  main()
