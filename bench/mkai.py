#!/usr/bin/env python3
"""Write an AI/ML-shaped benchmark image as a docker-archive, for `docker load`.

    bench/mkai.py --size-mib 8192 --tag dflt-bench-ai-8192:src --work DIR | docker load

The shape of the largest images users flatten (issue 24): a Python tree of
many small files under a few huge, barely compressible weight files.

  1 tree     real files of up to 1 MiB of this machine (/usr/lib/python3*,
             /usr/share, the shared libraries), copied again under
             opt/venv/copyN/ once they run out: SIZE/8 bytes and at
             least 50,000 files per 8 GiB (~6,100 per GiB)
  2 weights  opt/model/model-00001-of-00003.bin    (SIZE - tree) / 3
  3 weights  opt/model/model-00002-of-00003.bin    (SIZE - tree) / 3
  4 weights  opt/model/model-00003-of-00003.bin    (SIZE - tree) / 3
  5 update   model-00001-of-00003.bin again, new content of the same size
             (a fine-tune): the flattened image drops the old copy

The final filesystem holds SIZE MiB; the layers hold SIZE + (SIZE - tree)/3
(8 GiB: 1 GiB of tree, three 2.33 GiB weight files, ~10.3 GiB of layers).
With --base-tag the archive also holds an image of the bottom four layers
(the tree and the original weights: the base a fine-tune is built on).

Weights are bf16-like: pseudo-random bytes (SHAKE-128, fixed seeds) whose
every other byte, the one that holds the sign and exponent, goes through a
table that keeps it to a few values, as a trained model's exponents are. gzip
-1 leaves about 84% of them (real fp16/bf16 weights: 80-90%).

Deterministic: fixed seeds and mtimes (real files keep theirs). Each layer tar
is written under --work (hashed on the way) and sent into the archive on
stdout before the next one is made, so the work dir holds one layer at a time
(the largest, one weight file) and `docker load` reads while layers are made.
Progress goes to stderr.
"""

import hashlib
import json
import os
import platform
import stat
import sys
import tarfile
import time

from mkimage import parse_args, walk_files  # the generators share the command line and the file walk

MiB = 1 << 20
BLOCK = 512
RECORD = 20 * BLOCK  # what tarfile pads an archive to
SMALL_FILE_MAX = 1 * MiB  # the tree's files: ~16 KiB on average, as a site-packages'
EPOCH = 1700000000
FILES_PER_8GIB = 50000
CHUNK = 4 * MiB

ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
        "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}.get(platform.machine(), platform.machine())

# The high byte of a little-endian bf16: the sign (top bit of the random
# byte, kept) and the top of the exponent, drawn from the low 7 bits by these
# shares of 128 (weights of a trained layer sit within a few powers of two).
# gzip -1 of the result: ~83.8% (checked on 16 MiB).
EXPONENT_SLOTS = [(0x3c, 44), (0x3d, 30), (0x3b, 26), (0x3a, 12), (0x3e, 8), (0x39, 5), (0x38, 2), (0x3f, 1)]


def log(msg):
    print(f"mkai: {msg}", file=sys.stderr, flush=True)


def _exponent_table():
    slots = [v for v, n in EXPONENT_SLOTS for _ in range(n)]
    assert len(slots) == 128
    return bytes((u & 0x80) | slots[u & 0x7f] for u in range(256))


HIGH = _exponent_table()


def weight_chunks(seed, n):
    """n bytes of bf16-like weights, the same for the same seed."""
    i = 0
    while n > 0:
        size = min(n, CHUNK)
        raw = hashlib.shake_128(f"{seed}/{i}".encode()).digest(size)
        buf = bytearray(raw)
        buf[1::2] = raw[1::2].translate(HIGH)
        yield buf
        n -= size
        i += 1


class HashingFile:
    """A file being written, its SHA-256 taken on the way."""

    def __init__(self, path):
        self.f = open(path, "wb")
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, b):
        self.h.update(b)
        self.f.write(b)
        self.size += len(b)

    def close(self):
        self.f.close()


def header(ti):
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class Layer:
    """One layer tar under the work dir, written by hand (tarfile's copy goes
    16 KiB at a time); parent directories are added as needed."""

    def __init__(self, work, name):
        self.name = name
        self.path = os.path.join(work, f"{name}.tar")
        self.out = HashingFile(self.path)
        self.dirs = set()
        self.bytes = 0
        self.files = 0

    def _parents(self, arcname):
        parts = arcname.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.dirs:
                self.dirs.add(d)
                ti = tarfile.TarInfo(d)
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                ti.mtime = EPOCH
                self.out.write(header(ti))

    def _pad(self, n):
        if n % BLOCK:
            self.out.write(bytes(BLOCK - n % BLOCK))

    def add_chunks(self, arcname, size, chunks, mode=0o644):
        self._parents(arcname)
        ti = tarfile.TarInfo(arcname)
        ti.size = size
        ti.mode = mode
        ti.mtime = EPOCH
        self.out.write(header(ti))
        done = 0
        for c in chunks:
            self.out.write(c)
            done += len(c)
        assert done == size, (arcname, done, size)
        self._pad(size)
        self.bytes += size
        self.files += 1

    def add_real(self, path, st, arcname):
        """A real file or symlink; False if it could not be read."""
        ti = tarfile.TarInfo(arcname)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.mtime = int(st.st_mtime)
        if stat.S_ISLNK(st.st_mode):
            try:
                ti.linkname = os.readlink(path)
            except OSError:
                return False
            ti.type = tarfile.SYMTYPE
            data = b""
        else:
            try:
                with open(path, "rb") as f:
                    data = f.read(SMALL_FILE_MAX + 1)
            except OSError:
                return False
            if len(data) > SMALL_FILE_MAX:
                return False
            ti.size = len(data)  # what was read, whatever stat said
        self._parents(arcname)
        self.out.write(header(ti))
        if data:
            self.out.write(data)
            self._pad(len(data))
        self.bytes += len(data)
        self.files += 1
        return True

    def close(self):
        end = 2 * BLOCK
        total = self.out.size + end
        end += (RECORD - total % RECORD) % RECORD
        self.out.write(bytes(end))
        self.out.close()
        self.diff_id = "sha256:" + self.out.h.hexdigest()
        log(f"layer {self.name}: {self.files} files, {self.bytes / MiB:.1f} MiB")


def tree_roots():
    lib = "/usr/lib"
    pys = sorted(os.path.join(lib, d) for d in os.listdir(lib) if d.startswith("python3"))
    roots = pys + ["/usr/share", f"/usr/lib/{platform.machine()}-linux-gnu"]
    return [r for r in roots if os.path.isdir(r) and not os.path.islink(r)]


def fill_tree(layer, budget, min_files):
    roots = tree_roots()
    if not roots:
        sys.exit("mkai: no /usr/lib/python3*, /usr/share or /usr/lib/<arch>-linux-gnu to copy")
    rnd = 0
    while layer.bytes < budget or layer.files < min_files:
        added = 0
        for path, st in walk_files(roots, SMALL_FILE_MAX):
            arc = path.lstrip("/")
            if rnd:
                arc = f"opt/venv/copy{rnd}/{arc}"
            if layer.add_real(path, st, arc):
                added += 1
            if layer.bytes >= budget and layer.files >= min_files:
                break
        if not added:
            sys.exit(f"mkai: no readable files under {roots}")
        rnd += 1


def image_config(diff_ids, names, labels, created):
    return {
        "architecture": ARCH,
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": created, "created_by": f"bench/mkai.py layer {n}"} for n in names],
    }


class Archive:
    """The docker-archive on stdout: each layer sent as soon as it is made."""

    def __init__(self, out):
        self.out = out
        self.written = 0

    def write(self, b):
        self.out.write(b)
        self.written += len(b)

    def add_bytes(self, name, data):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mtime = EPOCH
        self.write(header(ti))
        self.write(data)
        if len(data) % BLOCK:
            self.write(bytes(BLOCK - len(data) % BLOCK))

    def add_layer(self, layer):
        d = layer.diff_id.split(":")[1]
        ti = tarfile.TarInfo(d)
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        ti.mtime = EPOCH
        self.write(header(ti))
        size = os.path.getsize(layer.path)
        ti = tarfile.TarInfo(f"{d}/layer.tar")
        ti.size = size
        ti.mode = 0o644
        ti.mtime = EPOCH
        self.write(header(ti))
        with open(layer.path, "rb") as f:
            while chunk := f.read(CHUNK):
                self.write(chunk)
        if size % BLOCK:
            self.write(bytes(BLOCK - size % BLOCK))
        os.unlink(layer.path)  # free the disk before the next layer
        return f"{d}/layer.tar"

    def close(self):
        end = 2 * BLOCK
        total = self.written + end
        end += (RECORD - total % RECORD) % RECORD
        self.write(bytes(end))
        self.out.flush()


def main():
    args, labels = parse_args(__doc__, 5, "directory for the layer tars (one at a time)",
                              "layers of the --base-tag image (default 4: the tree and the original weights)")

    size = args.size_mib * MiB
    tree_bytes = size // 8
    min_files = FILES_PER_8GIB * args.size_mib // 8192
    weight = (size - tree_bytes) // 3
    weight -= weight % 2  # whole bf16 values
    archive = Archive(sys.stdout.buffer)
    names, diff_ids, members = [], [], []
    t0 = time.time()

    def emit(layer):
        layer.close()
        names.append(layer.name)
        diff_ids.append(layer.diff_id)
        members.append(archive.add_layer(layer))

    tree = Layer(args.work, "1-tree")
    fill_tree(tree, tree_bytes, min_files)
    emit(tree)
    for i in range(3):
        layer = Layer(args.work, f"{i + 2}-weights")
        layer.add_chunks(f"opt/model/model-{i + 1:05d}-of-00003.bin", weight, weight_chunks(f"weights{i}", weight))
        emit(layer)
    update = Layer(args.work, "5-update")
    update.add_chunks("opt/model/model-00001-of-00003.bin", weight, weight_chunks("weights0-tuned", weight))
    emit(update)
    log(f"layers written in {time.time() - t0:.1f}s")

    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH))
    images = [(args.tag, len(names))]
    if args.base_tag:
        images.append((args.base_tag, args.base_layers))
    manifest = []
    for tag, n in images:
        config = json.dumps(image_config(diff_ids[:n], names[:n], labels, created), sort_keys=True).encode()
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        archive.add_bytes(config_name, config)
        manifest.append({"Config": config_name, "RepoTags": [tag], "Layers": members[:n]})
    archive.add_bytes("manifest.json", json.dumps(manifest).encode())
    archive.close()
    log(f"archive of {archive.written / MiB:.1f} MiB in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
