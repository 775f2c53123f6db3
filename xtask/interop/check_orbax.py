#!/usr/bin/env python3
"""Checks that orbax-checkpoint 0.12.8 reads the roots ckpt wrote, as ckpt says it wrote them.

  python check_orbax.py MANIFEST.json

MANIFEST.json is what `cargo run -p ckpt-manager --example write_interop_root -- DIR` writes to
DIR/manifest.json. Run by `cargo xtask interop` with the interpreter of its virtual environment
(target/interop-venv), where orbax-checkpoint is installed.

For every root in the manifest it checks:
  * layout and bytes, read off the files (no Orbax involved but its deserializers):
    - the expected step directories exist, and the leftovers that must not count as steps too;
    - a step directory holds only _CHECKPOINT_METADATA, commit_success.txt, ckpt's checksum
      manifest _CKPT_CHECKSUMS (a file, which Orbax ignores), in commit-file mode the writer's
      claim _CKPT_WRITER (a file too), and the item dirs;
    - commit_success.txt in every step and item directory, with Orbax's exact text;
    - _CHECKPOINT_METADATA: parses with Orbax's step_metadata_serialization, keys in Orbax's
      order, and is byte for byte what Orbax writes for the same metadata;
    - metadata/_ROOT_METADATA: likewise, with root_metadata_serialization (absent when none
      was given);
    - each JSON item file and metrics/metrics is byte for byte json.dumps(value);
  * through ocp.CheckpointManager (read-only, synchronous), opened as the root's options say:
    all_steps(), latest_step(), best_step(), metrics(step), metadata(), metadata(step)
    (item_handlers, custom_metadata, metrics, timestamps), restore(step, args=...) of every
    JSON item, and restore() with no args: it must give every item back in roots holding only
    JSON items, and fail with Orbax's "could not be restored" ValueError naming the item in roots
    holding a ckpt-only item (`params`, type string ckpt.tensors), as Orbax does for any handler
    it does not know;
  * that Orbax reading the root changed no file in it.

Prints one PASS/FAIL line per check, then "N passed, M failed"; exits 1 if any check failed,
2 on bad input.
"""
import hashlib
import json
import os
import sys
import traceback

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ORBAX_VERSION = "0.12.8"
COMMIT_TEXT = "Checkpoint commit was successful to "
STEP_METADATA_KEYS = [
    "item_handlers", "metrics", "performance_metrics", "init_timestamp_nsecs",
    "commit_timestamp_nsecs", "custom_metadata",
]
TMP_SUFFIX = ".orbax-checkpoint-tmp"

PASSED = []
FAILED = []


class CheckFailed(Exception):
  pass


def expect(cond, message):
  if not cond:
    raise CheckFailed(message)


def dumps(v):
  """Python's json.dumps, as Orbax writes JSON files: the yardstick for bytes and values."""
  return json.dumps(v)


def expect_same(actual, expected, what):
  """Strict JSON equality: types (1 vs 1.0, -0.0 vs 0.0, true vs 1) and key order count."""
  expect(dumps(actual) == dumps(expected),
         f"{what}: got {dumps(actual)[:400]}, expected {dumps(expected)[:400]}")


def check(label, fn):
  try:
    detail = fn()
  except CheckFailed as e:
    FAILED.append(label)
    print(f"FAIL {label}: {e}", flush=True)
    return
  except FileNotFoundError as e:
    FAILED.append(label)
    print(f"FAIL {label}: missing file {e.filename}", flush=True)
    return
  except Exception as e:  # pylint: disable=broad-except
    FAILED.append(label)
    tb = traceback.format_exc().strip().splitlines()
    print(f"FAIL {label}: {type(e).__name__}: {e}", flush=True)
    for line in tb[-6:]:
      print(f"     | {line}", flush=True)
    return
  PASSED.append(label)
  print(f"PASS {label}" + (f": {detail}" if detail else ""), flush=True)


def read_bytes(path):
  with open(path, "rb") as f:
    return f.read()


def tree_digest(root):
  """Every path under root with its kind, size and content hash."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for d in dirnames:
      out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
    for f in sorted(filenames):
      p = os.path.join(dirpath, f)
      out[os.path.relpath(p, root)] = hashlib.sha256(read_bytes(p)).hexdigest()
  return out


# ------------------------------------------------------------------------------- file checks


def check_files(root, ocp_mods):
  step_ser, root_ser = ocp_mods
  path = root["path"]
  name = root["name"]
  atomic = root["options"]["atomicity"] == "atomic_rename"

  def dirs_exist():
    for rec in root["steps"].values():
      expect(os.path.isdir(os.path.join(path, rec["dir"])), f"no step directory {rec['dir']}")
    for n in root["not_steps"]:
      if n.endswith(TMP_SUFFIX) or not atomic:
        expect(os.path.isdir(os.path.join(path, n)), f"leftover {n} is missing")
      else:
        expect(not os.path.exists(os.path.join(path, n)), f"deleted step {n} is still on disk")
    return ", ".join(sorted(os.listdir(path)))
  check(f"{name}: root entries", dirs_exist)

  for step, rec in root["steps"].items():
    sdir = os.path.join(path, rec["dir"])
    items = sorted(rec["item_handlers"])
    label = f"{name} step {step}"

    def entries(sdir=sdir, items=items):
      have = sorted(os.listdir(sdir))
      # In commit-file mode ckpt's writer claims the step first (_CKPT_WRITER, a file Orbax ignores).
      claim = [] if atomic else ["_CKPT_WRITER"]
      want = sorted(["_CHECKPOINT_METADATA", "_CKPT_CHECKSUMS", "commit_success.txt"] + claim + items)
      expect(have == want, f"step directory holds {have}, expected {want}")
      for i in items:
        expect(os.path.isdir(os.path.join(sdir, i)), f"{i} is not a directory")
    check(f"{label}: step directory entries", entries)

    def commit_files(sdir=sdir, items=items, rec=rec):
      got = read_bytes(os.path.join(sdir, "commit_success.txt")).decode()
      expect(got == COMMIT_TEXT + sdir, f"step commit_success.txt is {got!r}")
      for i in items:
        f = os.path.join(sdir, i, "commit_success.txt")
        expect(os.path.isfile(f), f"{i}/commit_success.txt is missing")
        # Orbax names the item's path inside the step's tmp dir (atomic rename), else its final path.
        where = os.path.join(path, rec["dir"] + TMP_SUFFIX, i) if atomic else os.path.join(sdir, i)
        got = read_bytes(f).decode()
        expect(got == COMMIT_TEXT + where, f"{i}/commit_success.txt is {got!r}, expected {COMMIT_TEXT + where!r}")
    check(f"{label}: commit_success.txt in the step and every item", commit_files)

    def step_metadata(sdir=sdir, rec=rec):
      raw = read_bytes(os.path.join(sdir, "_CHECKPOINT_METADATA")).decode("utf-8")
      d = json.loads(raw)
      expect(list(d) == STEP_METADATA_KEYS, f"keys {list(d)}")
      internal = step_ser.InternalCheckpointMetadata.deserialize(d)
      orbax_bytes = json.dumps(internal.serialize())
      expect(orbax_bytes == raw, f"bytes differ from Orbax's serialization:\n  ckpt : {raw}\n  orbax: {orbax_bytes}")
      meta = step_ser.deserialize(d)
      expect(dict(meta.item_handlers) == rec["item_handlers"], f"item_handlers {meta.item_handlers}")
      expect_same(meta.custom_metadata, rec["custom_metadata"], "custom_metadata")
      expect(d["metrics"] == {} and d["performance_metrics"] == {}, "metrics/performance_metrics not {}")
      i, c = meta.init_timestamp_nsecs, meta.commit_timestamp_nsecs
      expect(isinstance(i, int) and isinstance(c, int) and 0 < i <= c, f"timestamps init={i} commit={c}")
      return f"{len(raw)} bytes"
    check(f"{label}: _CHECKPOINT_METADATA parses with Orbax and is byte-identical", step_metadata)

    def json_files(sdir=sdir, rec=rec):
      files = [(os.path.join(sdir, n, "metadata"), v) for n, v in rec["json_items"].items()]
      if rec["metrics"] is not None:
        files.append((os.path.join(sdir, "metrics", "metrics"), rec["metrics"]))
      else:
        expect(not os.path.exists(os.path.join(sdir, "metrics")), "a metrics item was written without metrics")
      for f, v in files:
        raw = read_bytes(f).decode("utf-8")
        expect(raw == dumps(v), f"{os.path.relpath(f, sdir)} differs from json.dumps:\n  ckpt  : {raw}\n  python: {dumps(v)}")
      return f"{len(files)} files"
    check(f"{label}: JSON item and metrics files are json.dumps bytes", json_files)

  def root_metadata():
    f = os.path.join(path, "metadata", "_ROOT_METADATA")
    custom = root["root_custom_metadata"]
    if not custom:
      expect(not os.path.exists(os.path.join(path, "metadata")), "metadata/ written though none was given")
      return "none written, none expected"
    raw = read_bytes(f).decode("utf-8")
    d = json.loads(raw)
    expect(list(d) == ["internal_metadata", "custom_metadata"], f"keys {list(d)}")
    internal = root_ser.InternalRootMetadata.deserialize(d)
    orbax_bytes = json.dumps(internal.serialize())
    expect(orbax_bytes == raw, f"bytes differ from Orbax's serialization:\n  ckpt : {raw}\n  orbax: {orbax_bytes}")
    expect_same(root_ser.deserialize(d).custom_metadata, custom, "custom_metadata")
    return f"{len(raw)} bytes"
  check(f"{name}: metadata/_ROOT_METADATA as Orbax reads and writes it", root_metadata)


# ---------------------------------------------------------------------------- manager checks


def open_manager(ocp, root):
  o = root["options"]
  kw = dict(
      step_prefix=o["step_prefix"],
      step_format_fixed_length=o["step_format_fixed_length"],
      read_only=True,
      create=False,
      enable_async_checkpointing=False,
  )
  if o["best_metric"] is not None:
    metric = o["best_metric"]
    kw["best_fn"] = lambda m: m[metric]
    kw["best_mode"] = o["best_mode"]
  if o["atomicity"] == "commit_file":
    kw["atomicity_options"] = ocp.options.AtomicityOptions(mode=ocp.options.AtomicityMode.COMMIT_FILE)
  return ocp.CheckpointManager(root["path"], options=ocp.CheckpointManagerOptions(**kw))


def check_manager(ocp, root):
  name = root["name"]
  steps = root["steps"]
  mngr = None

  def opens():
    nonlocal mngr
    mngr = open_manager(ocp, root)
  check(f"{name}: ocp.CheckpointManager opens the root (read-only)", opens)
  if mngr is None:
    return

  def listing():
    expect(mngr.all_steps() == root["all_steps"], f"all_steps() = {mngr.all_steps()}, expected {root['all_steps']}")
    expect(mngr.latest_step() == root["latest_step"], f"latest_step() = {mngr.latest_step()}")
    if root["best_step"] is not None:
      expect(mngr.best_step() == root["best_step"], f"best_step() = {mngr.best_step()}, expected {root['best_step']}")
    return f"all_steps={mngr.all_steps()} latest={mngr.latest_step()} best={mngr.best_step()}"
  check(f"{name}: all_steps/latest_step/best_step", listing)

  def metrics():
    for step, rec in steps.items():
      expect_same(mngr.metrics(int(step)), rec["metrics"], f"metrics({step})")
  check(f"{name}: metrics(step) for every step", metrics)

  def root_meta():
    meta = mngr.metadata()
    expect(meta.internal_metadata == {} or meta.internal_metadata is None, f"internal_metadata {meta.internal_metadata}")
    expect_same(meta.custom_metadata, root["root_custom_metadata"], "metadata().custom_metadata")
  check(f"{name}: metadata() root custom metadata", root_meta)

  def step_meta():
    for step, rec in steps.items():
      meta = mngr.metadata(int(step))
      expect(dict(meta.item_handlers) == rec["item_handlers"], f"step {step}: item_handlers {meta.item_handlers}")
      expect_same(meta.custom_metadata, rec["custom_metadata"], f"step {step}: custom_metadata")
      expect_same(meta.metrics, rec["metrics"] or {}, f"step {step}: metrics")
      i, c = meta.init_timestamp_nsecs, meta.commit_timestamp_nsecs
      expect(isinstance(i, int) and isinstance(c, int) and i <= c, f"step {step}: timestamps {i}, {c}")
  check(f"{name}: metadata(step) item_handlers/custom_metadata/metrics/timestamps", step_meta)

  def restore_with_args():
    for step, rec in steps.items():
      if root["mode"] == "default":
        got = mngr.restore(int(step), args=ocp.args.JsonRestore())
        expect_same(got, rec["json_items"]["default"], f"restore({step}, JsonRestore())")
      else:
        args = ocp.args.Composite(**{n: ocp.args.JsonRestore() for n in rec["json_items"]})
        got = mngr.restore(int(step), args=args)
        expect(sorted(got.keys()) == sorted(rec["json_items"]), f"restore({step}) keys {sorted(got.keys())}")
        for n, v in rec["json_items"].items():
          expect_same(got[n], v, f"restore({step})[{n!r}]")
  check(f"{name}: restore(step, args=JsonRestore) gives back every JSON item", restore_with_args)
  mngr.close()

  def restore_without_args():
    fresh = open_manager(ocp, root)  # no handler registered by earlier restores
    latest = str(root["latest_step"])
    rec = steps[latest]
    try:
      if root["argless_restore"].startswith("fails:"):
        item = root["argless_restore"].split(":", 1)[1]
        try:
          fresh.restore(None)
        except ValueError as e:
          expect(f'Item "{item}" was found in the checkpoint, but could not be restored' in str(e), f"error: {e}")
          return f"fails as Orbax does for an unknown handler: {str(e)[:90]}..."
        raise CheckFailed("restore() with no args succeeded though an item has a ckpt-only handler")
      got = fresh.restore(None)
      if root["mode"] == "default":
        expect_same(got, rec["json_items"]["default"], f"restore() of step {latest}")
      else:
        want = dict(rec["json_items"])
        if rec["metrics"] is not None:
          want["metrics"] = rec["metrics"]
        expect(sorted(got.keys()) == sorted(want), f"restore() keys {sorted(got.keys())}")
        for n, v in want.items():
          expect_same(got[n], v, f"restore()[{n!r}]")
      return f"step {latest}"
    finally:
      fresh.close()
  check(f"{name}: restore() with no args (latest step, handlers from the step metadata)", restore_without_args)


def main(argv):
  if len(argv) != 2:
    print(__doc__.strip().splitlines()[2], file=sys.stderr)
    return 2
  try:
    with open(argv[1], encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, ValueError) as e:
    print(f"check_orbax: cannot read the manifest {argv[1]}: {e}", file=sys.stderr)
    return 2

  from importlib import metadata as importlib_metadata  # pylint: disable=import-outside-toplevel
  version = importlib_metadata.version("orbax-checkpoint")
  if version != ORBAX_VERSION:
    print(f"FAIL orbax-checkpoint version is {version}, expected {ORBAX_VERSION}")
    return 1
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.ERROR)
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  from orbax.checkpoint._src.metadata import root_metadata_serialization as root_ser  # pylint: disable=import-outside-toplevel
  from orbax.checkpoint._src.metadata import step_metadata_serialization as step_ser  # pylint: disable=import-outside-toplevel
  print(f"check_orbax: orbax-checkpoint {version}, jax {importlib_metadata.version('jax')}, "
        f"roots written by {manifest.get('writer')}", flush=True)

  def json_typestr():
    got = ocp.handlers.JsonCheckpointHandler().typestr()
    expect(got == manifest["orbax_json_handler"], f"Orbax's is {got!r}, ckpt records {manifest['orbax_json_handler']!r}")
  check("ckpt records Orbax's JsonCheckpointHandler type string", json_typestr)

  for root in manifest["roots"]:
    before = tree_digest(root["path"])
    check_files(root, (step_ser, root_ser))
    check_manager(ocp, root)

    def unchanged(root=root, before=before):
      after = tree_digest(root["path"])
      changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
      expect(not changed, f"Orbax changed {changed}")
      return f"{len(after)} entries"
    check(f"{root['name']}: reading with Orbax changed no file", unchanged)

  print(f"{len(PASSED)} passed, {len(FAILED)} failed", flush=True)
  if FAILED:
    print("failed checks:\n  " + "\n  ".join(FAILED), flush=True)
  return 1 if FAILED else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
