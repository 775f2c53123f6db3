#!/usr/bin/env python3
"""Has orbax-checkpoint 0.12.8 write a root from a MULTI-PROCESS JAX job, for ckpt's tests.

  python gen_orbax_multiprocess.py OUT_DIR [--processes N] [--port PORT]

(PORT of JAX's coordinator: a free one on 127.0.0.1 unless given.)

Starts N (default 4) local JAX processes (`jax.distributed.initialize` on 127.0.0.1, CPU
backend, gloo collectives, one CPU device each) which together save two steps of a pytree of
`jax.Array`s sharded across the processes with `ocp.CheckpointManager(OUT_DIR/root).save(step,
args=ocp.args.StandardSave(tree))`: Orbax's multi-process layout, each process writing
`default/ocdbt.process_<i>/`, process 0 merging them into `default/manifest.ocdbt`. Then, in
this process, `values.json`: per step every leaf's global dtype, shape and raw little-endian
C-order bytes as hex, and what each process held (its shard boxes).

Leaves: sharded along one axis over a 1-d mesh of all devices (1-d to 3-d; float32, int32,
float64, uint16, bfloat16), one sharded over a 2x2 mesh along one axis and replicated along the
other (each shard held by 2 processes, written once: replica_id 0), one fully replicated array,
and Python scalars. JAX refuses uneven shards (a dimension not divisible by its mesh axis), so
there are none.

Run with the interpreter of a virtual environment holding orbax-checkpoint 0.12.8 and jax[cpu].
OUT_DIR must not exist yet.
"""
import json
import os
import subprocess
import sys

STEPS = (0, 1)


def tree_spec():
  """(param name, dtype name, global shape, partition spec over mesh axes ('x',) or ('a','b'))."""
  return [
      ("params.w1", "float32", (16,), ("x",), "1d"),
      ("params.w2", "int32", (8, 6), ("x", None), "1d"),
      ("params.w3", "float64", (3, 4, 5), (None, "x", None), "1d"),
      ("params.u16", "uint16", (6, 8), (None, "x"), "1d"),
      ("opt.mu", "bfloat16", (4, 8), (None, "x"), "1d"),
      ("opt.half", "float32", (4, 6), ("a", None), "2d"),
      ("emb", "float32", (5,), (), "1d"),
  ]


def global_value(np, ml_dtypes, index, name, dtype, shape, step):
  n = 1
  for s in shape:
    n *= s
  a = np.arange(n, dtype=np.float64).reshape(shape) * 0.5 + step * 100.0 + index * 7.0
  if index % 2 == 0:
    a = -a
  if dtype == "bfloat16":
    return a.astype(ml_dtypes.bfloat16)
  if dtype == "uint16":
    return (np.abs(a) * 2).astype(np.uint16)
  if dtype == "int32":
    return (a * 2).astype(np.int32)
  return a.astype(dtype)


def child(out_dir, pid, n, port):
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.config.update("jax_enable_x64", True)  # keep float64 leaves float64
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=n,
                             process_id=pid)
  import numpy as np  # pylint: disable=g-import-not-at-top
  import ml_dtypes  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  devices = np.array(jax.devices())
  mesh1 = Mesh(devices, ("x",))
  mesh2 = Mesh(devices.reshape(2, n // 2), ("a", "b"))
  mngr = ocp.CheckpointManager(os.path.join(out_dir, "root"))
  held = {}
  for step in STEPS:
    tree = {"step": step, "lr": 0.001 * (step + 1)}
    for index, (name, dtype, shape, spec, mesh) in enumerate(tree_spec()):
      g = global_value(np, ml_dtypes, index, name, dtype, shape, step)
      sharding = NamedSharding(mesh1 if mesh == "1d" else mesh2, P(*spec))
      arr = jax.make_array_from_callback(shape, sharding, lambda idx, g=g: g[idx])
      at = tree
      parts = name.split(".")
      for p in parts[:-1]:
        at = at.setdefault(p, {})
      at[parts[-1]] = arr
      held[name] = [
          {"index": [[s.start or 0, s.stop if s.stop is not None else shape[d]]
                     for d, s in enumerate(sh.index)], "replica_id": sh.replica_id}
          for sh in arr.addressable_shards
      ]
    mngr.save(step, args=ocp.args.StandardSave(tree))
  mngr.wait_until_finished()
  mngr.close()
  with open(os.path.join(out_dir, f"held.process_{pid}.json"), "w") as f:
    json.dump(held, f)
  print(f"process {pid} done", flush=True)


def main():
  args = sys.argv[1:]
  if args and args[0] == "--child":
    child(args[1], int(args[2]), int(args[3]), int(args[4]))
    return
  out_dir = args[0]
  n = int(args[args.index("--processes") + 1]) if "--processes" in args else 4
  if "--port" in args:
    port = int(args[args.index("--port") + 1])
  else:
    import socket  # pylint: disable=g-import-not-at-top
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
  os.makedirs(out_dir)
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
  procs = [subprocess.Popen([sys.executable, __file__, "--child", out_dir, str(i), str(n),
                             str(port)], env=env) for i in range(n)]
  codes = [p.wait(timeout=600) for p in procs]
  if any(codes):
    sys.exit(f"a JAX process failed: exit codes {codes}")
  import numpy as np  # pylint: disable=g-import-not-at-top
  import ml_dtypes  # pylint: disable=g-import-not-at-top
  held = {}
  for i in range(n):
    path = os.path.join(out_dir, f"held.process_{i}.json")
    held[str(i)] = json.load(open(path))
    os.remove(path)
  values = {"orbax_version": "0.12.8", "processes": n, "byte_order": "little-endian, C order",
            "held": held, "steps": {}}
  for step in STEPS:
    leaves = [{"param_name": "lr", "kind": "scalar", "dtype": "float64", "shape": [],
               "data_hex": np.float64(0.001 * (step + 1)).tobytes().hex()},
              {"param_name": "step", "kind": "scalar", "dtype": "int64", "shape": [],
               "data_hex": np.int64(step).tobytes().hex()}]
    for index, (name, dtype, shape, _, _) in enumerate(tree_spec()):
      g = global_value(np, ml_dtypes, index, name, dtype, shape, step)
      leaves.append({"param_name": name, "kind": "array", "dtype": dtype, "shape": list(shape),
                     "data_hex": np.ascontiguousarray(g).tobytes().hex()})
    values["steps"][str(step)] = leaves
  with open(os.path.join(out_dir, "values.json"), "w") as f:
    json.dump(values, f, indent=1)
  print(f"wrote {out_dir}")


if __name__ == "__main__":
  main()
