#!/usr/bin/env python3
"""Sample the temporary space a process tree uses in a directory, until the
process exits; write the largest total seen (bytes) to --out.

    bench/tmpwatch.py --dir TMPDIR --pid PID --out FILE [--interval 0.5]

docker-flatten spools into unnamed files (O_TMPFILE) in TMPDIR, which `du`
does not see: every sample adds the files named under --dir (as `du -sb`:
apparent sizes) and the deleted or unnamed files under --dir that PID or one
of its descendants holds open (/proc/PID/fd), each file counted once.
Also writes the largest single file seen to FILE.largest.
"""

import argparse
import os
import time


def descendants(root):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # pid (comm) state ppid ...: comm may hold spaces and brackets
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def sample(d, pid):
    seen = {}
    for dirpath, _, filenames in os.walk(d):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            seen[st.st_dev, st.st_ino] = st.st_size
    prefix = d.rstrip("/") + "/"
    for p in descendants(pid):
        fd_dir = f"/proc/{p}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
                if not target.startswith(prefix):
                    continue
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            seen[st.st_dev, st.st_ino] = st.st_size
    return sum(seen.values()), max(seen.values(), default=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--interval", type=float, default=0.5)
    args = ap.parse_args()
    d = os.path.realpath(args.dir)
    peak = largest = 0
    while os.path.exists(f"/proc/{args.pid}"):
        total, big = sample(d, args.pid)
        peak, largest = max(peak, total), max(largest, big)
        try:
            with open(f"/proc/{args.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break  # exited, not yet reaped
        except OSError:
            break
        time.sleep(args.interval)
    with open(args.out, "w") as f:
        print(peak, file=f)
    with open(args.out + ".largest", "w") as f:
        print(largest, file=f)


if __name__ == "__main__":
    main()
