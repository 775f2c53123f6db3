#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (corpus/<target>/seed-*) from the repository's
test data: the Orbax-written roots of testdata/orbax. Run from anywhere; idempotent."""
import os, struct, glob, hashlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(REPO, "testdata", "orbax")


def put(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def files_blob(db_dir):
    """An OCDBT directory as the ocdbt_database input: manifest.ocdbt and d/<hex> files."""
    out = b""
    for path in sorted(glob.glob(os.path.join(db_dir, "manifest.ocdbt")) + glob.glob(os.path.join(db_dir, "d", "*"))):
        rel = os.path.relpath(path, db_dir).encode()
        body = open(path, "rb").read()
        out += struct.pack("<H", len(rel)) + rel + struct.pack("<I", len(body)) + body
    return out


for m in glob.glob(os.path.join(DATA, "**", "manifest.ocdbt"), recursive=True):
    put("ocdbt_manifest", open(m, "rb").read())
    blob = files_blob(os.path.dirname(m))
    if len(blob) <= 1 << 20:
        put("ocdbt_database", blob)
for pattern, target in [("**/.zarray", "zarr_metadata"), ("**/zarr.json", "zarr_metadata"),
                        ("**/_METADATA", "tree_metadata"), ("**/_CHECKPOINT_METADATA", "step_metadata"),
                        ("**/_ROOT_METADATA", "step_metadata"), ("**/*.safetensors", "safetensors")]:
    for p in glob.glob(os.path.join(DATA, pattern), recursive=True)[:40]:
        put(target, open(p, "rb").read())

def item_blob(item_dir):
    """An Orbax array item (a directory holding _METADATA) as the orbax_item input: every file
    below it, by its path relative to the item."""
    out = b""
    for root, _, names in sorted(os.walk(item_dir)):
        for n in sorted(names):
            path = os.path.join(root, n)
            rel = os.path.relpath(path, item_dir).encode()
            body = open(path, "rb").read()
            out += struct.pack("<H", len(rel)) + rel + struct.pack("<I", len(body)) + body
    return out


for meta in glob.glob(os.path.join(DATA, "**", "_METADATA"), recursive=True):
    blob = item_blob(os.path.dirname(meta))
    if len(blob) <= 256 << 10:
        put("orbax_item", blob)
for t in sorted(os.listdir(os.path.join(HERE, "corpus"))):
    print(t, len(os.listdir(os.path.join(HERE, "corpus", t))))


def safetensors(tensors):
    """A safetensors file: {name: (dtype, shape, bytes)}."""
    import json
    header, data = {}, b""
    for name, (dtype, shape, body) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(body)]}
        data += body
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", safetensors({"w": ("F32", [2, 3], bytes(range(24))), "b": ("I64", [1], bytes(8))}))
put("safetensors", safetensors({"x": ("BF16", [4], bytes(8)), "m": ("BOOL", [3], b"\x00\x01\x00"), "s": ("U8", [], b"\x07")}))
put("safetensors", safetensors({}))
print("safetensors", len(os.listdir(os.path.join(HERE, "corpus", "safetensors"))))
