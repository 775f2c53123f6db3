#!/usr/bin/env python3
"""Decodes a tensorstore OCDBT database byte by byte, without tensorstore.

  python ocdbt_dump.py DIR            # summary: config, versions, every key and where its value is
  python ocdbt_dump.py DIR --fields   # also every field of every structure, with its byte offset
  python ocdbt_dump.py DIR --json     # the same facts as JSON (keys and inline values as hex)
  python ocdbt_dump.py DIR --compare-tensorstore   # decode everything, compare with tensorstore

DIR holds `manifest.ocdbt` (an Orbax item directory, or one of its `ocdbt.process_<i>/`
subdirectories). Written from the format description in docs/orbax-arrays/ocdbt.md, as a check of
that description: if this script and `tensorstore.ocdbt.dump` agree on a database, the document
says enough to decode it. Standard library only, plus the `zstandard` package for zstd-compressed
manifests and nodes (Orbax's default); `--check-values` also reads every indirect value and checks
that it lies inside its data file.

Offsets printed by --fields: for the outer header and footer, offsets in the file (or in the data
file at the node's offset); for everything inside a compressed body, offsets in the DECOMPRESSED
body, marked `body+N`.

--compare-tensorstore (needs the tensorstore package): reads every key's value of the latest
version with this decoder and through tensorstore's ocdbt driver and checks they are equal, walks
the whole version tree (manifest inline versions and every version tree node) and checks it lists
each generation 1..latest exactly once, and checks each version tree node against
tensorstore.ocdbt.dump of the same node.
"""
import json
import os
import struct
import sys

MANIFEST_MAGIC = 0x0CDB3A2A
VERSION_NODE_MAGIC = 0x0CDB1234
BTREE_NODE_MAGIC = 0x0CDB20DE


# --- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table driven ---------------------------

def _crc32c_table():
  table = []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_CRC_TABLE = _crc32c_table()


def crc32c(data):
  c = 0xFFFFFFFF
  for b in data:
    c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  return c ^ 0xFFFFFFFF


def zstd_decompress(data):
  try:
    import zstandard  # pylint: disable=import-outside-toplevel
  except ImportError:
    sys.exit("ocdbt_dump: this structure is zstd-compressed; `pip install zstandard` first")
  # The frames tensorstore writes may omit the content size, so decompress as a stream.
  return zstandard.ZstdDecompressor().decompressobj().decompress(data)


class FormatError(Exception):
  pass


class Reader:
  """A cursor over bytes that records every field it reads (name, offset, length, value)."""

  def __init__(self, data, label, fields):
    self.data = data
    self.pos = 0
    self.label = label  # "file" or "body": how offsets are printed
    self.fields = fields

  def _note(self, name, start, value):
    if self.fields is not None:
      self.fields.append((self.label, start, self.pos - start, name, value))

  def take(self, n, name):
    if self.pos + n > len(self.data):
      raise FormatError(f"{name}: needs {n} bytes at {self.pos}, only {len(self.data) - self.pos} left")
    start = self.pos
    out = self.data[start:start + n]
    self.pos += n
    self._note(name, start, out.hex() if len(out) <= 32 else f"{out[:32].hex()}... ({n} bytes)")
    return out

  def u8(self, name):
    start = self.pos
    if self.pos >= len(self.data):
      raise FormatError(f"{name}: unexpected end at {self.pos}")
    v = self.data[self.pos]
    self.pos += 1
    self._note(name, start, v)
    return v

  def varint(self, name, max_bits=64):
    """Unsigned LEB128: 7 bits per byte, least significant group first, high bit = more."""
    start = self.pos
    v = 0
    shift = 0
    while True:
      if self.pos >= len(self.data):
        raise FormatError(f"{name}: truncated varint at {start}")
      b = self.data[self.pos]
      self.pos += 1
      v |= (b & 0x7F) << shift
      shift += 7
      if not b & 0x80:
        break
      if shift >= max_bits + 7:
        raise FormatError(f"{name}: varint too long at {start}")
    if v >> max_bits:
      raise FormatError(f"{name}: varint {v} exceeds {max_bits} bits")
    self._note(name, start, v)
    return v

  def fixed(self, fmt, size, name):
    start = self.pos
    if self.pos + size > len(self.data):
      raise FormatError(f"{name}: truncated at {self.pos}")
    (v,) = struct.unpack_from(fmt, self.data, self.pos)
    self.pos += size
    self._note(name, start, v)
    return v

  def at_end(self):
    return self.pos == len(self.data)


def open_envelope(data, magic, what, fields):
  """Checks and strips the header/footer shared by manifests, version nodes and B+tree nodes.

  Returns (Reader over the decompressed body, format version).
  """
  if len(data) < 16:
    raise FormatError(f"{what}: {len(data)} bytes is shorter than the 16-byte minimum")
  r = Reader(data, "file", fields)
  m = r.fixed(">I", 4, f"{what}.magic (u32 big-endian)")
  if m != magic:
    raise FormatError(f"{what}: magic {m:#010x}, expected {magic:#010x}")
  length = r.fixed("<Q", 8, f"{what}.length (u64 little-endian, whole structure incl. crc)")
  if length != len(data):
    raise FormatError(f"{what}: header length {length} != actual {len(data)}")
  stored_crc = struct.unpack_from("<I", data, len(data) - 4)[0]
  actual_crc = crc32c(data[:-4])
  if stored_crc != actual_crc:
    raise FormatError(f"{what}: crc32c {actual_crc:#010x} != stored {stored_crc:#010x}")
  version = r.varint(f"{what}.format_version (varint)", 32)
  if version != 0:
    raise FormatError(f"{what}: format version {version}, only 0 exists")
  compression = r.varint(f"{what}.compression_format (varint; 0 raw, 1 zstd)", 32)
  compressed = data[r.pos:len(data) - 4]
  if fields is not None:
    fields.append(("file", r.pos, len(compressed), f"{what}.body ({'zstd' if compression else 'raw'})",
                   f"{len(compressed)} bytes"))
    fields.append(("file", len(data) - 4, 4, f"{what}.crc32c (u32 little-endian, of bytes [0, len-4))",
                   f"{stored_crc:#010x}"))
  if compression == 0:
    body = compressed
  elif compression == 1:
    body = zstd_decompress(compressed)
  else:
    raise FormatError(f"{what}: unknown compression_format {compression}")
  return Reader(body, "body", fields), version


# --- data file table ---------------------------------------------------------------------------------

def read_data_file_table(r, transitive_path, what):
  """Returns a list of (base_path, relative_path) byte strings; base_path includes transitive_path."""
  n = r.varint(f"{what}.data_file_table.num_files")
  prefix = [0] + [r.varint(f"{what}.data_file_table.path_prefix_length[{i}]", 16) for i in range(1, n)]
  suffix = [r.varint(f"{what}.data_file_table.path_suffix_length[{i}]", 16) for i in range(n)]
  base_len = [r.varint(f"{what}.data_file_table.base_path_length[{i}]", 16) for i in range(n)]
  files = []
  prev_path = b""
  prev_base_len = 0
  for i in range(n):
    if prefix[i] > len(prev_path):
      raise FormatError(f"{what}: path_prefix_length[{i}] exceeds previous path")
    if prefix[i] > min(prev_base_len, base_len[i]) and base_len[i] != prev_base_len:
      raise FormatError(f"{what}: prefix of path {i} crosses a base_path boundary")
    path = prev_path[:prefix[i]] + r.take(suffix[i], f"{what}.data_file_table.path_suffix[{i}]")
    if base_len[i] > len(path):
      raise FormatError(f"{what}: base_path_length[{i}] > path length")
    files.append((transitive_path + path[:base_len[i]], path[base_len[i]:]))
    prev_path = path
    prev_base_len = base_len[i]
  return files


def file_ref(files, index, what):
  if index >= len(files):
    raise FormatError(f"{what}: data file id {index} outside table of {len(files)}")
  return files[index]


def path_of(ref):
  base, rel = ref
  return (base + rel).decode()


# --- manifest ----------------------------------------------------------------------------------------

def read_config(r):
  cfg = {}
  cfg["uuid"] = r.take(16, "config.uuid (16 raw bytes)").hex()
  cfg["manifest_kind"] = r.u8("config.manifest_kind (byte; 0 single, 1 numbered)")
  cfg["max_inline_value_bytes"] = r.varint("config.max_inline_value_bytes (varint)", 32)
  cfg["max_decoded_node_bytes"] = r.varint("config.max_decoded_node_bytes (varint)", 32)
  cfg["version_tree_arity_log2"] = r.u8("config.version_tree_arity_log2 (byte)")
  method = r.varint("config.compression_method (varint; 0 none, 1 zstd)", 32)
  if method == 0:
    cfg["compression"] = "none"
  elif method == 1:
    level = r.fixed("<i", 4, "config.zstd_level (i32 little-endian)")
    cfg["compression"] = f"zstd(level={level})"
  else:
    raise FormatError(f"config: unknown compression method {method}")
  return cfg


def read_version_leaf_entries(r, files, what):
  n = r.varint(f"{what}.num_versions")
  gens = [r.varint(f"{what}.generation_number[{i}]") for i in range(n)]
  heights = [r.u8(f"{what}.root_height[{i}] (byte)") for i in range(n)]
  fids = [r.varint(f"{what}.root.data_file_id[{i}]") for i in range(n)]
  offs = [r.varint(f"{what}.root.offset[{i}]") for i in range(n)]
  lens = [r.varint(f"{what}.root.length[{i}]") for i in range(n)]
  nkeys = [r.varint(f"{what}.root.num_keys[{i}]") for i in range(n)]
  ntree = [r.varint(f"{what}.root.num_tree_bytes[{i}]") for i in range(n)]
  nind = [r.varint(f"{what}.root.num_indirect_value_bytes[{i}]") for i in range(n)]
  times = [r.fixed("<Q", 8, f"{what}.commit_time[{i}] (u64 little-endian ns)") for i in range(n)]
  out = []
  for i in range(n):
    entry = {"generation_number": gens[i], "root_height": heights[i], "commit_time_ns": times[i],
             "num_keys": nkeys[i], "num_tree_bytes": ntree[i], "num_indirect_value_bytes": nind[i]}
    if offs[i] == lens[i] == 2**64 - 1:
      entry["root"] = None  # empty tree: no root node ("missing" reference, offset = length = max)
    else:
      entry["root"] = {"file": file_ref(files, fids[i], what), "offset": offs[i], "length": lens[i]}
    out.append(entry)
  return out


def read_version_interior_entries(r, files, what, with_height):
  n = r.varint(f"{what}.num_children")
  gens = [r.varint(f"{what}.generation_number[{i}]") for i in range(n)]
  fids = [r.varint(f"{what}.data_file_id[{i}]") for i in range(n)]
  offs = [r.varint(f"{what}.offset[{i}]") for i in range(n)]
  lens = [r.varint(f"{what}.length[{i}]") for i in range(n)]
  ngen = [r.varint(f"{what}.num_generations[{i}]") for i in range(n)]
  times = [r.fixed("<Q", 8, f"{what}.commit_time[{i}] (u64 little-endian)") for i in range(n)]
  heights = [r.u8(f"{what}.entry_height[{i}] (byte)") for i in range(n)] if with_height else [None] * n
  return [{"generation_number": gens[i], "file": file_ref(files, fids[i], what), "offset": offs[i],
           "length": lens[i], "num_generations": ngen[i], "commit_time": times[i],
           "height": heights[i]} for i in range(n)]


def decode_manifest(data, fields=None):
  r, _ = open_envelope(data, MANIFEST_MAGIC, "manifest", fields)
  m = {"config": read_config(r)}
  if m["config"]["manifest_kind"] != 0:
    m["note"] = "numbered manifest: versions live in manifest.<16 hex digits> files"
    return m
  files = read_data_file_table(r, b"", "manifest")
  m["data_files"] = [path_of(f) for f in files]
  m["versions"] = read_version_leaf_entries(r, files, "manifest.versions")
  m["version_tree_nodes"] = read_version_interior_entries(r, files, "manifest.version_nodes", True)
  if not r.at_end():
    raise FormatError(f"manifest: {len(r.data) - r.pos} trailing bytes in body")
  return m


def decode_version_node(data, transitive_path, fields=None):
  r, _ = open_envelope(data, VERSION_NODE_MAGIC, "versionnode", fields)
  arity_log2 = r.u8("versionnode.version_tree_arity_log2 (byte)")
  height = r.u8("versionnode.height (byte)")
  files = read_data_file_table(r, transitive_path, "versionnode")
  if height == 0:
    entries = read_version_leaf_entries(r, files, "versionnode.versions")
  else:
    entries = read_version_interior_entries(r, files, "versionnode.children", False)
  return {"arity_log2": arity_log2, "height": height, "entries": entries}


# --- B+tree nodes ------------------------------------------------------------------------------------

def decode_btree_node(data, transitive_path, fields=None):
  """Returns {"height", "entries"}; keys are relative to the prefix the parent implies."""
  r, _ = open_envelope(data, BTREE_NODE_MAGIC, "btreenode", fields)
  height = r.u8("btreenode.height (byte; 0 = leaf)")
  files = read_data_file_table(r, transitive_path, "btreenode")
  n = r.varint("btreenode.num_entries", 32)
  if n == 0:
    raise FormatError("btreenode: empty node")
  prefix = [0] + [r.varint(f"btreenode.key_prefix_length[{i}]", 32) for i in range(1, n)]
  suffix = [r.varint(f"btreenode.key_suffix_length[{i}]", 32) for i in range(n)]
  subtree = ([r.varint(f"btreenode.subtree_common_prefix_length[{i}]", 32) for i in range(n)]
             if height > 0 else None)
  keys = []
  prev = b""
  for i in range(n):
    if prefix[i] > len(prev):
      raise FormatError(f"btreenode: key_prefix_length[{i}] exceeds previous key")
    key = prev[:prefix[i]] + r.take(suffix[i], f"btreenode.key_suffix[{i}]")
    if i and key <= prev:
      raise FormatError("btreenode: keys not strictly increasing")
    keys.append(key)
    prev = key
  entries = []
  if height == 0:
    lengths = [r.varint(f"btreenode.value_length[{i}]") for i in range(n)]
    kinds = [r.u8(f"btreenode.value_kind[{i}] (byte; 0 inline, 1 indirect)") for i in range(n)]
    indirect = [i for i in range(n) if kinds[i] == 1]
    if any(k > 1 for k in kinds):
      raise FormatError("btreenode: value_kind outside [0, 1]")
    fids = {i: r.varint(f"btreenode.value.data_file_id[{i}]") for i in indirect}
    offs = {i: r.varint(f"btreenode.value.offset[{i}]") for i in indirect}
    for i in range(n):
      if kinds[i] == 0:
        value = r.take(lengths[i], f"btreenode.inline_value[{i}]")
        entries.append({"key": keys[i], "inline": value})
      else:
        entries.append({"key": keys[i], "file": file_ref(files, fids[i], "btreenode"),
                        "offset": offs[i], "length": lengths[i]})
  else:
    fids = [r.varint(f"btreenode.child.data_file_id[{i}]") for i in range(n)]
    offs = [r.varint(f"btreenode.child.offset[{i}]") for i in range(n)]
    lens = [r.varint(f"btreenode.child.length[{i}]") for i in range(n)]
    nkeys = [r.varint(f"btreenode.child.num_keys[{i}]") for i in range(n)]
    ntree = [r.varint(f"btreenode.child.num_tree_bytes[{i}]") for i in range(n)]
    nind = [r.varint(f"btreenode.child.num_indirect_value_bytes[{i}]") for i in range(n)]
    for i in range(n):
      if subtree[i] > len(keys[i]):
        raise FormatError("btreenode: subtree_common_prefix_length exceeds key length")
      entries.append({"key": keys[i], "subtree_common_prefix_length": subtree[i],
                      "file": file_ref(files, fids[i], "btreenode"), "offset": offs[i],
                      "length": lens[i], "num_keys": nkeys[i], "num_tree_bytes": ntree[i],
                      "num_indirect_value_bytes": nind[i]})
  if not r.at_end():
    raise FormatError(f"btreenode: {len(r.data) - r.pos} trailing bytes in body")
  return {"height": height, "entries": entries}


# --- walking a database ------------------------------------------------------------------------------

class Database:

  def __init__(self, root):
    self.root = root
    self._cache = {}

  def read(self, path, offset, length):
    full = os.path.join(self.root, path)
    if full not in self._cache:
      with open(full, "rb") as f:
        self._cache[full] = f.read()
    data = self._cache[full]
    if offset + length > len(data):
      raise FormatError(f"{path}: [{offset}, {offset + length}) outside file of {len(data)} bytes")
    return data[offset:offset + length]

  def walk_btree(self, ref, height, key_prefix, out, fields_sink):
    """Appends (full key, entry) for every leaf entry under the node at `ref`."""
    (base, rel), offset, length = ref
    data = self.read((base + rel).decode(), offset, length)
    fields = [] if fields_sink is not None else None
    node = decode_btree_node(data, base, fields)
    if fields_sink is not None:
      fields_sink.append((f"btreenode {(base + rel).decode()} @{offset}+{length}", fields))
    if node["height"] != height:
      raise FormatError(f"btreenode: height {node['height']}, parent said {height}")
    for e in node["entries"]:
      if height == 0:
        out.append((key_prefix + e["key"], e))
      else:
        child_prefix = key_prefix + e["key"][:e["subtree_common_prefix_length"]]
        self.walk_btree((e["file"], e["offset"], e["length"]), height - 1, child_prefix, out,
                        fields_sink)


def read_all(db_dir):
  """{full key: value bytes} of the latest version, decoded by this script alone."""
  with open(os.path.join(db_dir, "manifest.ocdbt"), "rb") as f:
    m = decode_manifest(f.read())
  db = Database(db_dir)
  leaves = []
  latest = m["versions"][-1]
  if latest["root"]:
    root = latest["root"]
    db.walk_btree((root["file"], root["offset"], root["length"]), latest["root_height"], b"",
                  leaves, None)
  out = {}
  for k, e in leaves:
    out[k] = e["inline"] if "inline" in e else db.read(path_of(e["file"]), e["offset"], e["length"])
  return m, out


def all_generations(db_dir, m):
  """Every generation the version tree references: inline ones plus those under version nodes."""
  db = Database(db_dir)
  arity_log2 = m["config"]["version_tree_arity_log2"]
  gens = [v["generation_number"] for v in m["versions"]]
  nodes = []

  def visit(ref, height):
    (base, rel) = ref["file"]
    node = decode_version_node(db.read((base + rel).decode(), ref["offset"], ref["length"]), base)
    nodes.append((ref, node))
    if node["arity_log2"] != arity_log2 or node["height"] != height:
      raise FormatError("version node: arity or height differs from its parent's")
    if height == 0:
      gens.extend(e["generation_number"] for e in node["entries"])
    else:
      for e in node["entries"]:
        visit(e, height - 1)

  for ref in m["version_tree_nodes"]:
    visit(ref, ref["height"])
  return sorted(gens), nodes


def compare_with_tensorstore(db_dir):
  import tensorstore as ts  # pylint: disable=import-outside-toplevel
  m, mine = read_all(db_dir)
  kv = ts.KvStore.open({"driver": "ocdbt",
                        "base": {"driver": "file", "path": os.path.abspath(db_dir) + "/"}}).result()
  theirs = {k: kv.read(k).result().value for k in kv.list().result()}
  if mine != theirs:
    only = sorted(set(mine) ^ set(theirs))[:5]
    diff = sorted(k for k in set(mine) & set(theirs) if mine[k] != theirs[k])[:5]
    raise FormatError(f"{db_dir}: decoded values differ from tensorstore's (keys only on one side:"
                      f" {only}, differing values: {diff})")
  gens, nodes = all_generations(db_dir, m)
  if gens != list(range(1, m["versions"][-1]["generation_number"] + 1)):
    raise FormatError(f"{db_dir}: version tree lists generations {gens}")
  base_kv = ts.KvStore.open({"driver": "file", "path": os.path.abspath(db_dir) + "/"}).result()
  for ref, node in nodes:
    (base, rel) = ref["file"]
    loc = f"versionnode:{base.decode()}:{rel.decode()}:{ref['offset']}:{ref['length']}"
    dumped = ts.ocdbt.dump(base_kv, loc).result()
    if dumped["height"] != node["height"] or len(dumped["entries"]) != len(node["entries"]):
      raise FormatError(f"{db_dir}: version node {loc} decodes differently from tensorstore's dump")
    for a, b in zip(dumped["entries"], node["entries"]):
      if a["generation_number"] != b["generation_number"]:
        raise FormatError(f"{db_dir}: version node {loc}: generation numbers differ")
  print(f"OK {db_dir}: {len(mine)} keys equal to tensorstore's; generations 1..{gens[-1]} "
        f"({len(m['versions'])} inline, {len(nodes)} version tree nodes)")


def describe(db_dir, show_fields, as_json, check_values):
  with open(os.path.join(db_dir, "manifest.ocdbt"), "rb") as f:
    manifest_bytes = f.read()
  manifest_fields = [] if show_fields else None
  m = decode_manifest(manifest_bytes, manifest_fields)
  db = Database(db_dir)
  node_fields = [] if show_fields else None
  latest = m["versions"][-1] if m.get("versions") else None
  leaves = []
  if latest and latest["root"]:
    root = latest["root"]
    db.walk_btree((root["file"], root["offset"], root["length"]), latest["root_height"], b"",
                  leaves, node_fields)
  if check_values:
    for _, e in leaves:
      if "file" in e:
        db.read(path_of(e["file"]), e["offset"], e["length"])

  if as_json:
    def ref_json(e):
      return {"file": path_of(e["file"]), "base_path": e["file"][0].decode(),
              "offset": e["offset"], "length": e["length"]}
    doc = {
        "manifest_bytes": len(manifest_bytes),
        "config": m["config"],
        "data_files": m.get("data_files", []),
        "versions": [dict(v, root=(None if v["root"] is None else ref_json(v["root"])))
                     for v in m.get("versions", [])],
        "version_tree_nodes": [dict(v, file=path_of(v["file"])) for v in m.get("version_tree_nodes", [])],
        "keys": [dict({"key": k.decode("utf-8", "backslashreplace")},
                      **({"inline_hex": e["inline"].hex()} if "inline" in e else ref_json(e)))
                 for k, e in leaves],
    }
    print(json.dumps(doc, indent=1))
    return

  print(f"manifest.ocdbt: {len(manifest_bytes)} bytes")
  for k, v in m["config"].items():
    print(f"  config.{k} = {v}")
  for v in m.get("versions", []):
    root = v["root"]
    where = "no root (empty tree)" if root is None else (
        f"{path_of(root['file'])} @{root['offset']}+{root['length']} (base_path {root['file'][0].decode()!r})")
    print(f"  version gen={v['generation_number']} root_height={v['root_height']} "
          f"commit_time_ns={v['commit_time_ns']} keys={v['num_keys']} tree_bytes={v['num_tree_bytes']} "
          f"indirect_bytes={v['num_indirect_value_bytes']} root: {where}")
  for v in m.get("version_tree_nodes", []):
    print(f"  version_tree_node gen<={v['generation_number']} height={v['height']} "
          f"{path_of(v['file'])} @{v['offset']}+{v['length']}")
  if show_fields:
    print_fields("manifest.ocdbt", manifest_fields)
    for label, fields in node_fields:
      print_fields(label, fields)
  print(f"latest version: {len(leaves)} keys")
  for k, e in leaves:
    key = k.decode("utf-8", "backslashreplace")
    if "inline" in e:
      print(f"  {key:<40} inline {len(e['inline'])} bytes")
    else:
      print(f"  {key:<40} indirect {path_of(e['file'])} @{e['offset']}+{e['length']}"
            f" (base_path {e['file'][0].decode()!r})")


def print_fields(label, fields):
  print(f"--- fields of {label}")
  for where, off, n, name, value in fields:
    print(f"  {where}+{off:<5} {n:>4}B  {name} = {value}")


def main(argv):
  args = [a for a in argv[1:] if not a.startswith("--")]
  flags = {a for a in argv[1:] if a.startswith("--")}
  if len(args) != 1 or flags - {"--fields", "--json", "--check-values", "--compare-tensorstore"}:
    sys.exit(__doc__)
  try:
    if "--compare-tensorstore" in flags:
      compare_with_tensorstore(args[0])
    else:
      describe(args[0], "--fields" in flags, "--json" in flags, "--check-values" in flags)
  except FormatError as e:
    sys.exit(f"ocdbt_dump: {e}")


if __name__ == "__main__":
  main(sys.argv)
