#!/usr/bin/env python3
"""Write a multi-layer benchmark image as a docker-archive, for `docker load`.

    bench/mkimage.py --size-mib 100 --tag dflt-bench-100:src --work DIR | docker load

Offline: the content is taken from real files on this machine (/usr/share,
/usr/lib, /etc), plus a few large files that are concatenations of real files
or pseudo-random (incompressible) data. The final filesystem holds about
SIZE MiB; the layers hold more, because some of it is wasted on purpose:

  1 share    small real files from /usr/share and /etc            25%
  2 libs     real files from /usr/lib/x86_64-linux-gnu, /usr/lib   25%
  3 scratch  a 64 MiB random file and a directory of real files,
             both deleted again by layer 6                       (+64 MiB+)
  4 big      a few large files: random data 20%, concatenations   35%
  5 update   overwrites files of layer 1 with new content         (~5% again)
  6 cleanup  whiteouts: .wh.waste.bin, .wh.scratch, and some single
             files of layer 2
  7 app      more real files (/usr/lib beyond layer 2, /usr/share) 15%

The layer tars are written under --work (about SIZE MiB + 64 MiB of disk);
the archive itself is streamed to stdout. Random data comes from SHAKE-128
with a fixed seed, so two builds on the same machine hold the same bytes.
Progress goes to stderr.
"""

import argparse
import hashlib
import io
import json
import os
import platform
import stat
import sys
import tarfile
import time

MiB = 1 << 20
SMALL_FILE_MAX = 8 * MiB  # larger real files are left to the "big" layer
EPOCH = 1700000000  # fixed mtime for generated entries and the config

ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
        "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}.get(platform.machine(), platform.machine())


def log(msg):
    print(f"mkimage: {msg}", file=sys.stderr, flush=True)


def random_bytes(seed, n):
    """n pseudo-random bytes, the same for the same seed, in 1 MiB chunks."""
    i = 0
    while n > 0:
        chunk = min(n, MiB)
        yield hashlib.shake_128(f"{seed}/{i}".encode()).digest(chunk)
        n -= chunk
        i += 1


class ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks, for tarfile.addfile."""

    def __init__(self, chunks):
        self.chunks = iter(chunks)
        self.buf = memoryview(b"")

    def readable(self):
        return True

    def readinto(self, b):
        # Fills b whole unless at the end: tarfile takes a short read for EOF.
        done = 0
        while done < len(b):
            if not self.buf:
                try:
                    self.buf = memoryview(next(self.chunks))
                except StopIteration:
                    break
            n = min(len(b) - done, len(self.buf))
            b[done:done + n] = self.buf[:n]
            self.buf = self.buf[n:]
            done += n
        return done


def walk_files(roots, max_size=SMALL_FILE_MAX):
    """Real regular files (up to max_size) and symlinks under roots, in a
    stable order."""
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_size <= max_size:
                    yield path, st
                elif stat.S_ISLNK(st.st_mode):
                    yield path, st


class Layer:
    """One layer tar under the work dir; parents are added as directories."""

    def __init__(self, work, name):
        self.name = name
        self.path = os.path.join(work, f"{name}.tar")
        self.file = open(self.path, "wb")
        self.tar = tarfile.open(fileobj=self.file, mode="w|", format=tarfile.PAX_FORMAT)
        self.dirs = set()
        self.bytes = 0  # file content added
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
                self.tar.addfile(ti)

    def add_bytes(self, arcname, size, chunks, mode=0o644):
        self._parents(arcname)
        ti = tarfile.TarInfo(arcname)
        ti.size = size
        ti.mode = mode
        ti.mtime = EPOCH
        self.tar.addfile(ti, ChunkReader(chunks))
        self.bytes += size
        self.files += 1

    def add_empty(self, arcname):
        self.add_bytes(arcname, 0, [])

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
            self._parents(arcname)
            self.tar.addfile(ti)
            self.files += 1
            return True
        try:
            f = open(path, "rb")
        except OSError:
            return False
        with f:
            # Always a regular file: no hard links, so every copy costs bytes.
            ti.size = os.fstat(f.fileno()).st_size
            self._parents(arcname)
            self.tar.addfile(ti, f)
        self.bytes += ti.size
        self.files += 1
        return True

    def close(self):
        self.tar.close()
        self.file.close()
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            while chunk := f.read(4 * MiB):
                h.update(chunk)
        self.diff_id = "sha256:" + h.hexdigest()
        log(f"layer {self.name}: {self.files} files, {self.bytes / MiB:.1f} MiB")


class Source:
    """Real files from roots, cycled under /srv/copyN/ once exhausted."""

    def __init__(self, roots):
        self.roots = [r for r in roots if os.path.isdir(r)]
        if not self.roots:
            sys.exit(f"mkimage: none of {roots} exists")
        self.round = 0
        self.it = walk_files(self.roots)

    def next(self):
        for _ in range(2):
            for path, st in self.it:
                arc = path.lstrip("/")
                if self.round:
                    arc = f"srv/copy{self.round}/{arc}"
                return path, st, arc
            self.round += 1
            self.it = walk_files(self.roots)
        sys.exit(f"mkimage: no readable files under {self.roots}")

    def fill(self, layer, budget, taken=None):
        """Add real files to layer until budget bytes; records arcnames."""
        start = layer.bytes
        while layer.bytes - start < budget:
            path, st, arc = self.next()
            if layer.add_real(path, st, arc) and taken is not None and stat.S_ISREG(st.st_mode):
                taken.append((path, st, arc))


def build(size_mib, work):
    size = size_mib * MiB
    layers = []
    t0 = time.time()

    # 1: many small real files.
    share = Layer(work, "1-share")
    share_files = []
    Source(["/usr/share", "/etc"]).fill(share, size * 25 // 100, share_files)
    share.close()
    layers.append(share)

    # 2: libraries.
    libs = Layer(work, "2-libs")
    lib_files = []
    Source([f"/usr/lib/{platform.machine()}-linux-gnu", "/usr/lib"]).fill(libs, size * 25 // 100, lib_files)
    libs.close()
    layers.append(libs)

    # 3: waste that layer 6 deletes again.
    scratch = Layer(work, "3-scratch")
    scratch.add_bytes("var/cache/bench/waste.bin", 64 * MiB, random_bytes("waste", 64 * MiB))
    scratch.add_bytes("var/cache/bench/keep.txt", 5, [b"keep\n"])
    for path, st, arc in share_files[:200]:
        scratch.add_real(path, st, "opt/bench/scratch/" + arc)
    scratch.close()
    layers.append(scratch)

    # 4: a few large files, random (incompressible) and concatenated real files.
    big = Layer(work, "4-big")
    random_total = size * 20 // 100
    n_random = max(2, min(8, random_total // (100 * MiB)))
    for i in range(n_random):
        n = random_total // n_random
        big.add_bytes(f"opt/bench/big/random-{i}.bin", n, random_bytes(f"big{i}", n))
    concat_total = size * 15 // 100
    n_concat = max(1, min(4, concat_total // (150 * MiB)))
    parts = iter(Source([f"/usr/lib/{platform.machine()}-linux-gnu", "/usr/lib", "/usr/bin"]).it)

    def concat(n):
        left = n
        while left > 0:
            path, st = next(parts)
            if not stat.S_ISREG(st.st_mode):
                continue
            try:
                with open(path, "rb") as f:
                    data = f.read(left)
            except OSError:
                continue
            left -= len(data)
            yield data

    for i in range(n_concat):
        n = concat_total // n_concat
        big.add_bytes(f"opt/bench/big/concat-{i}.bin", n, concat(n))
    big.close()
    layers.append(big)

    # 5: overwrite files of layer 1 with new content (their old copies are waste).
    update = Layer(work, "5-update")
    budget = size * 5 // 100
    for path, st, arc in share_files:
        if update.bytes >= budget:
            break
        try:
            with open(path, "rb") as f:
                data = f.read() + b"\n# updated by layer 5\n"
        except OSError:
            continue
        update.add_bytes(arc, len(data), [data], stat.S_IMODE(st.st_mode))
    update.close()
    layers.append(update)

    # 6: whiteouts for layer 3, and for some single files of layer 2.
    cleanup = Layer(work, "6-cleanup")
    cleanup.add_empty("var/cache/bench/.wh.waste.bin")
    cleanup.add_empty("opt/bench/.wh.scratch")
    for path, st, arc in lib_files[::max(1, len(lib_files) // 40)][:40]:
        d, name = os.path.split(arc)
        cleanup.add_empty(f"{d}/.wh.{name}")
    cleanup.close()
    layers.append(cleanup)

    # 7: more real files: the rest of /usr/lib, past what layer 2 took.
    app = Layer(work, "7-app")
    src = Source(["/usr/lib", "/usr/share"])
    taken = {arc for _, _, arc in lib_files}
    start = app.bytes
    while app.bytes - start < size * 15 // 100:
        path, st, arc = src.next()
        if arc in taken:
            continue
        app.add_real(path, st, arc)
    app.close()
    layers.append(app)

    log(f"layers written in {time.time() - t0:.1f}s")
    return layers


def image_config(layers, labels, created):
    return {
        "architecture": ARCH,
        "os": "linux",
        "created": created,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [l.diff_id for l in layers]},
        "history": [{"created": created, "created_by": f"bench/mkimage.py layer {l.name}"} for l in layers],
    }


def write_archive(layers, tag, labels, out, base_tag=None, base_layers=0):
    """The image as a docker-archive; with base_tag, also an image of its
    bottom base_layers layers (the same blobs), for --keep-base."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(EPOCH))
    layer_names = [l.diff_id.split(":")[1] + "/layer.tar" for l in layers]
    images = [(tag, layers)]
    if base_tag:
        images.append((base_tag, layers[:base_layers]))
    configs, manifest = [], []
    for image_tag, image_layers in images:
        config_bytes = json.dumps(image_config(image_layers, labels, created), sort_keys=True).encode()
        config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        configs.append((config_name, config_bytes))
        manifest.append({"Config": config_name, "RepoTags": [image_tag],
                         "Layers": layer_names[:len(image_layers)]})
    manifest = json.dumps(manifest).encode()

    tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)

    def add(name, data):
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        ti.mtime = EPOCH
        tar.addfile(ti, io.BytesIO(data))

    for layer, name in zip(layers, layer_names):
        ti = tarfile.TarInfo(name.split("/")[0])
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        ti.mtime = EPOCH
        tar.addfile(ti)
        ti = tar.gettarinfo(layer.path, name)
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        with open(layer.path, "rb") as f:
            tar.addfile(ti, f)
        os.unlink(layer.path)  # free the disk as soon as it is sent
    for config_name, config_bytes in configs:
        add(config_name, config_bytes)
    add("manifest.json", manifest)
    tar.close()


def parse_args(doc, layers, work_help, base_help):
    """The generators' one command line (this one's, and bench/mkai.py's):
    an image of `layers` layers; returns the arguments and the labels, the
    work dir made."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--work", required=True, help=work_help)
    ap.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--base-tag", help="also write an image of the bottom --base-layers layers")
    ap.add_argument("--base-layers", type=int, default=4, help=base_help)
    args = ap.parse_args()
    if not 1 <= args.base_layers < layers:
        ap.error(f"--base-layers must be 1 to {layers - 1} (the image has {layers} layers)")
    if args.size_mib < 10:
        ap.error("--size-mib must be at least 10")
    if sys.stdout.isatty():
        ap.error("stdout is a terminal: pipe it into `docker load`")
    labels = dict(l.split("=", 1) for l in args.label)
    os.makedirs(args.work, exist_ok=True)
    return args, labels


def main():
    args, labels = parse_args(__doc__, 7, "directory for the layer tars",
                              "layers of the --base-tag image (default 4: about 85%% of the bytes)")
    layers = build(args.size_mib, args.work)
    write_archive(layers, args.tag, labels, sys.stdout.buffer, args.base_tag, args.base_layers)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
