#!/usr/bin/env python3
"""Turn a one-platform image into a multi-platform one, for timing a flatten
of every platform against a flatten of one.

    docker save SRC | bench/mkindex.py --tag NAME:TAG --platforms 2 | docker load

Reads the OCI layout `docker save` writes on the containerd store (Engine
25+) from stdin and writes one to stdout whose index.json names TAG and
points at a nested index of N manifests: SRC's own, and N-1 copies whose
config says another architecture (arm64/v8, s390x, ppc64le, riscv64). The
copies share SRC's layer blobs, so the archive is hardly bigger, and each
has one small layer of its own on top (a file naming its platform), so that
every platform's flattened layer differs, as a real multi-platform image's
do, and the engine writes each: flattening N platforms does N times the
work of one (only the copies' reads of the shared layers may come from the
page cache). The layers need not run on the other architectures: a flatten
creates its containers, never starts them.
"""

import argparse
import hashlib
import io
import json
import sys
import tarfile

OTHERS = [("arm64", "v8"), ("s390x", None), ("ppc64le", None), ("riscv64", None)]
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def add(out, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    out.addfile(info, io.BytesIO(data))


def own_layer(arch):
    """A plain layer tar holding /platform, naming `arch`."""
    data = f"{arch}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("platform")
        info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tag", required=True, help="name:tag of the multi-platform image")
    p.add_argument("--platforms", type=int, default=2, help="how many (2 to 5)")
    args = p.parse_args()
    if not 2 <= args.platforms <= 1 + len(OTHERS):
        p.error("--platforms must be 2 to 5")
    small = {}
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as src, \
            tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as out:
        for member in src:
            if not member.isfile():
                continue
            data = src.extractfile(member)
            if member.size <= 1 << 20:
                small[member.name] = data.read()
                if member.name.startswith("blobs/"):
                    add(out, member.name, small[member.name])
            else:
                out.addfile(member, data)
        index = json.loads(small["index.json"])
        doc, blob = index, None
        while "layers" not in doc:
            [entry] = doc["manifests"]
            blob = small["blobs/sha256/" + entry["digest"].split(":")[1]]
            doc = json.loads(blob)
        manifest = doc
        config_bytes = small["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]]
        config = json.loads(config_bytes)
        entries = [{"mediaType": MANIFEST, "digest": digest(blob), "size": len(blob),
                    "platform": {"os": config["os"], "architecture": config["architecture"]}}]
        for arch, variant in OTHERS[:args.platforms - 1]:
            layer = own_layer(arch)
            add(out, "blobs/sha256/" + digest(layer).split(":")[1], layer)
            other = dict(config, architecture=arch)
            other.pop("variant", None)
            other["rootfs"] = dict(config["rootfs"], diff_ids=config["rootfs"]["diff_ids"] + [digest(layer)])
            other["history"] = config.get("history", []) + [{"created_by": f"mkindex: /platform {arch}"}]
            platform = {"os": config["os"], "architecture": arch}
            if variant:
                other["variant"] = platform["variant"] = variant
            other_bytes = json.dumps(other).encode()
            add(out, "blobs/sha256/" + digest(other_bytes).split(":")[1], other_bytes)
            m = dict(manifest, mediaType=MANIFEST,
                     config=dict(manifest["config"], digest=digest(other_bytes), size=len(other_bytes)),
                     layers=manifest["layers"] + [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                                   "digest": digest(layer), "size": len(layer)}])
            m_bytes = json.dumps(m).encode()
            add(out, "blobs/sha256/" + digest(m_bytes).split(":")[1], m_bytes)
            entries.append({"mediaType": MANIFEST, "digest": digest(m_bytes), "size": len(m_bytes),
                            "platform": platform})
        nested = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}).encode()
        add(out, "blobs/sha256/" + digest(nested).split(":")[1], nested)
        name, _, tag = args.tag.rpartition(":")
        full = name if "/" in name else "docker.io/library/" + name
        top = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [{
            "mediaType": INDEX, "digest": digest(nested), "size": len(nested),
            "annotations": {"io.containerd.image.name": f"{full}:{tag}",
                            "org.opencontainers.image.ref.name": tag}}]}
        add(out, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(out, "index.json", json.dumps(top).encode())


if __name__ == "__main__":
    main()
