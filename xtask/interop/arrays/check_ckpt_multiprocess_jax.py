#!/usr/bin/env python3
"""Has a MULTI-PROCESS JAX job restore, with orbax-checkpoint 0.12.8, a root ckpt wrote.

  python check_ckpt_multiprocess_jax.py OUT_DIR/pytrees.json [--processes N]

pytrees.json is what `ckpt-manager/tests/multiprocess_pytrees.rs` leaves with
CKPT_MP_PYTREES_OUT (as `check_ckpt_pytrees.py` reads it): per root and step, every leaf of item
`default` with its dtype, shape and bytes. Starts N (default 4) local JAX processes
(`jax.distributed.initialize` on 127.0.0.1, CPU, gloo, x64, one device each); each restores every
step with `ocp.CheckpointManager(root).restore(step, args=ocp.args.StandardRestore(abstract))`,
where the abstract tree gives each array a NamedSharding over the 1-d mesh of all devices (split
along the first dimension the process count divides, else replicated), and checks every
addressable shard it got bit for bit against the global array (and every scalar). Prints
`PASS`/`FAIL` lines per process and `N passed, M failed`; exits 1 if any failed.
"""
import json
import os
import socket
import subprocess
import sys


def child(spec_path, pid, n, port):
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.config.update("jax_enable_x64", True)
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=n,
                             process_id=pid)
  import numpy as np  # pylint: disable=g-import-not-at-top
  import ml_dtypes  # pylint: disable=g-import-not-at-top
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  mesh = Mesh(np.array(jax.devices()), ("x",))
  spec = json.load(open(spec_path))
  out_dir = os.path.dirname(os.path.abspath(spec_path))
  failed = []
  checked = 0
  for root_name, root in spec["roots"].items():
    mngr = ocp.CheckpointManager(os.path.join(out_dir, root_name))
    for step, items in root["steps"].items():
      leaves = items["default"]
      abstract = {}
      want = {}
      for leaf in leaves:
        path = [k["dict"] for k in leaf["path"]]
        dtype = ml_dtypes.bfloat16 if leaf["dtype"] == "bfloat16" else np.dtype(leaf["dtype"])
        value = np.frombuffer(bytes.fromhex(leaf["data_hex"]), dtype=dtype).reshape(leaf["shape"])
        if leaf["kind"] == "array":
          shape = tuple(leaf["shape"])
          axes = [None] * len(shape)
          for d, s in enumerate(shape):
            if s % n == 0:
              axes[d] = "x"
              break
          node = jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, P(*axes)))
        else:
          node = value.item()
        at = abstract
        for k in path[:-1]:
          at = at.setdefault(k, {})
        at[path[-1]] = node
        want[".".join(path)] = value
      got = mngr.restore(int(step), args=ocp.args.StandardRestore(abstract))
      for name, value in want.items():
        at = got
        for k in name.split("."):
          at = at[k]
        what = f"process {pid}: {root_name}/{step} {name}"
        if isinstance(at, jax.Array):
          for shard in at.addressable_shards:
            a = np.asarray(shard.data)
            w = value[shard.index]
            if a.dtype != w.dtype or a.shape != w.shape or a.tobytes() != w.tobytes():
              failed.append(f"{what} shard {shard.index}: {a!r} != {w!r}")
            checked += 1
        else:
          if np.asarray(at).astype(value.dtype).tobytes() != value.tobytes():
            failed.append(f"{what}: {at!r} != {value!r}")
          checked += 1
  for f in failed:
    print(f"FAIL {f}", flush=True)
  print(f"process {pid}: {checked} shards and scalars checked, {len(failed)} wrong", flush=True)
  sys.exit(1 if failed or not checked else 0)


def main():
  args = sys.argv[1:]
  if args and args[0] == "--child":
    child(args[1], int(args[2]), int(args[3]), int(args[4]))
    return
  spec_path = args[0]
  n = int(args[args.index("--processes") + 1]) if "--processes" in args else 4
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
  procs = [subprocess.Popen([sys.executable, __file__, "--child", spec_path, str(i), str(n),
                             str(port)], env=env) for i in range(n)]
  codes = [p.wait(timeout=600) for p in procs]
  passed = sum(1 for c in codes if c == 0)
  for i, c in enumerate(codes):
    print(f"{'PASS' if c == 0 else 'FAIL'} JAX process {i} of {n} restored ckpt's root (exit {c})")
  print(f"{passed} passed, {n - passed} failed", flush=True)
  sys.exit(0 if passed == n else 1)


if __name__ == "__main__":
  main()
