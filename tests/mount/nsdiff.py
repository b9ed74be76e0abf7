#!/usr/bin/env python3
"""nsdiff — differential namespace test: random metadata operations applied
in lock-step to a native directory and to the mount, every result compared.

    nsdiff.py NATIVE MOUNT FIRST_SEED NSEEDS NOPS [--txn]

Per seed: mkdir, rmdir, create, unlink, rename (plain, NOREPLACE, EXCHANGE),
link, symlink (also dangling and escaping the tree), chmod with set-uid /
set-gid / sticky bits, chown (also -1 -1), truncate, user.* xattrs (also
XATTR_CREATE / XATTR_REPLACE), open flag combinations, writes, mkfifo,
utimensat, and descriptors held open for writing across all of that (pwrite,
pread, ftruncate, fstat, fallocate modes, copy_file_range, fsync) — over
five names and three levels, so operations collide. The errno of every
operation must match, and every 50 operations the two trees (type, mode,
link count, owner, size, bytes, symlink target, xattr names) must too.

Descriptors are opened for writing only: a descriptor opened read-only
while nobody writes keeps its version on txdir (SPEC §3, snapshots for
earlier readers), which is meant to differ from ext4.

--txn: the mount side is a transaction view (.txdir/txn/nsdiffSEED/root/...
of the mount MOUNT is on);
after the operations the transaction commits and the main tree must equal
the native one.

Each seed works in its own NATIVE/sSEED/w/t and MOUNT/sSEED/w/t, so
symlinks that climb two levels stay within the seed. The last line is
"N passed, N failed"; the exit status is non-zero on any failure.
"""
import ctypes
import errno
import os
import random
import stat
import sys

libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
AT_FDCWD = -100
NAMES = "abcde"
MODES = [0o755, 0o644, 0o700, 0o4755, 0o2755, 0o2745, 0o1777]
OPEN_FLAGS = [os.O_RDONLY, os.O_WRONLY | os.O_TRUNC, os.O_RDWR | os.O_CREAT | os.O_EXCL,
              os.O_WRONLY | os.O_CREAT, os.O_RDONLY | os.O_DIRECTORY,
              os.O_WRONLY | os.O_APPEND, os.O_RDONLY | os.O_NOFOLLOW]
FD_FLAGS = [os.O_RDWR, os.O_WRONLY | os.O_APPEND, os.O_RDWR | os.O_TRUNC]
# fallocate(2) modes: allocate, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE
FALLOC_MODES = [0, 1, 3, 0x10]


def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def existing(root):
    """Relative paths under root, and those of regular files (the native
    side: its state decides the next operation, so both sides get it)."""
    found, regular = [], []
    for dirpath, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            found.append(rel)
            try:
                if stat.S_ISREG(os.lstat(os.path.join(root, rel)).st_mode):
                    regular.append(rel)
            except OSError:  # a caller without search permission
                pass
    return sorted(found), sorted(regular)


def rpath(rng, have):
    """Mostly a path that exists (or a new name under one), so operations
    meet entries instead of ENOENT; otherwise any of 5 names x 3 levels."""
    if have and rng.random() < 0.8:
        p = rng.choice(have)
        if rng.random() < 0.3 and p.count("/") < 2:
            p += "/" + rng.choice(NAMES)
        return p
    return "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3)))


def gen_op(rng, side):
    have, files = existing(side.root)
    k = rng.randrange(27)
    p, q, mode = rpath(rng, have), rpath(rng, have), rng.choice(MODES)
    if k == 0: return ("mkdir", p, mode)
    if k == 1: return ("rmdir", p)
    if k == 2: return ("create", p, mode, rng.randrange(0, 9000))
    if k == 3: return ("unlink", p)
    if k == 4: return ("rename", p, q, rng.choice([0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE]))
    if k == 5: return ("link", p, q)
    if k == 6: return ("symlink", rng.choice(["a", "../b", "a/b", "../../zz/none", "c/d/e"]), p)
    if k == 7: return ("chmod", p, mode)
    if k == 8: return ("truncate", p, rng.randrange(0, 20000))
    if k == 9: return ("setxattr", p, rng.choice(["user.x", "user.y"]), rng.randrange(0, 300))
    if k == 10: return ("removexattr", p, rng.choice(["user.x", "user.y"]))
    if k == 11: return ("open", p, rng.choice(OPEN_FLAGS))
    if k == 12: return ("write", p, rng.randrange(0, 30000), rng.randrange(1, 5000))
    if k == 13: return ("mkfifo", p)
    if k == 14: return ("utime", p, rng.randrange(0, 2**31), rng.randrange(0, 10**9))
    if k == 15: return ("chown", p, rng.choice([0, 1000, -1]), rng.choice([0, 1000, -1]))
    if k == 22: return ("getxattr", p, rng.choice(["user.x", "user.y"]))
    if k == 23: return ("setxattr", p, rng.choice(["user.x", "user.y"]), rng.randrange(0, 300),
                        rng.choice([os.XATTR_CREATE, os.XATTR_REPLACE]))
    if k >= 24:  # fallocate, copy_file_range, fsync on open descriptors
        slots = sorted(side.fds)
        return ("fd", k - 18, rng.choice(slots) if slots else 0, rng.randrange(0, 40000),
                rng.randrange(1, 20000), rng.choice(FALLOC_MODES),
                rng.choice(slots) if slots else 0)
    # descriptors: slot, offset, length, path, flags; the I/O goes to open
    # slots while there are any
    what, slots = k - 16, sorted(side.fds)
    slot = rng.choice(slots) if what and slots else rng.randrange(6)
    if not what and files and rng.random() < 0.9:
        p = rng.choice(files)
    return ("fd", what, slot, rng.randrange(0, 40000), rng.randrange(1, 9000), p,
            rng.choice(FD_FLAGS))


class Side:
    def __init__(self, root):
        self.root = root
        self.fds = {}

    def path(self, rel):
        return os.path.join(self.root, rel)

    def fd_op(self, o):
        _, k, slot, off, ln, rel, flags = o
        fd = self.fds.get(slot)
        if k >= 6 and fd is None:
            return "no descriptor"
        if k == 6:  # rel is the fallocate mode here
            if libc.fallocate(fd, rel, ctypes.c_long(off), ctypes.c_long(ln)) != 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
            return "ok"
        if k == 7:  # flags is the source slot here
            src = self.fds.get(flags)
            if src is None:
                return "no descriptor"
            return "copied %d" % os.copy_file_range(src, fd, ln, off // 2, off)
        if k == 8:
            os.fsync(fd)
            return "ok"
        if k == 0:
            if fd is not None:
                os.close(self.fds.pop(slot))
            self.fds[slot] = os.open(self.path(rel), flags | os.O_NONBLOCK)
            return "ok"
        if fd is None:
            return "no descriptor"
        if k == 1:
            return "wrote %d" % os.pwrite(fd, bytes([(off + ln) % 256]) * ln, off)
        if k == 2:
            return "read %r" % hash(os.pread(fd, ln, off))
        if k == 3:
            os.ftruncate(fd, off)
            return "ok"
        if k == 4:
            st = os.fstat(fd)
            return "fstat %o size %d nlink %d" % (st.st_mode, st.st_size, st.st_nlink)
        os.close(self.fds.pop(slot))
        return "ok"

    def apply(self, o):
        P = self.path
        name = o[0]
        try:
            if name == "fd":
                return self.fd_op(o)
            if name == "mkdir": os.mkdir(P(o[1]), o[2])
            elif name == "rmdir": os.rmdir(P(o[1]))
            elif name == "create":
                fd = os.open(P(o[1]), os.O_CREAT | os.O_WRONLY | os.O_EXCL, o[2])
                try:
                    os.write(fd, bytes([len(o[1])]) * o[3])
                finally:
                    os.close(fd)
            elif name == "unlink": os.unlink(P(o[1]))
            elif name == "rename": renameat2(P(o[1]), P(o[2]), o[3])
            elif name == "link": os.link(P(o[1]), P(o[2]), follow_symlinks=False)
            elif name == "symlink": os.symlink(o[1], P(o[2]))
            elif name == "chmod": os.chmod(P(o[1]), o[2])
            elif name == "truncate": os.truncate(P(o[1]), o[2])
            elif name == "setxattr":
                os.setxattr(P(o[1]), o[2], b"v" * o[3], o[4] if len(o) > 4 else 0)
            elif name == "getxattr": return "value %d" % len(os.getxattr(P(o[1]), o[2]))
            elif name == "removexattr": os.removexattr(P(o[1]), o[2])
            elif name == "open": os.close(os.open(P(o[1]), o[2] | os.O_NONBLOCK, 0o640))
            elif name == "write":
                fd = os.open(P(o[1]), os.O_WRONLY | os.O_NONBLOCK)
                try:
                    os.pwrite(fd, b"w" * o[3], o[2])
                finally:
                    os.close(fd)
            elif name == "mkfifo": os.mkfifo(P(o[1]), 0o644)
            elif name == "utime":
                t = o[2] * 10**9 + o[3]
                os.utime(P(o[1]), ns=(t, t), follow_symlinks=False)
            elif name == "chown": os.chown(P(o[1]), o[2], o[3], follow_symlinks=False)
            return "ok"
        except OSError as e:
            return errno.errorcode.get(e.errno, str(e.errno))

    def close_all(self):
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def tree(root):
    """Every entry under root: path, mode, links, owner, size, bytes, target,
    xattr names (times differ by design: they are when each side ran)."""
    def attempt(fn, *args):
        try:
            return fn(*args)
        except OSError as e:  # a caller without permission (run as nobody)
            return errno.errorcode.get(e.errno, str(e.errno))

    def content(p):
        with open(p, "rb") as f:
            return hash(f.read())

    out = []
    walk_errors = []
    for dirpath, dirs, files in os.walk(root, onerror=lambda e: walk_errors.append(
            (os.path.relpath(e.filename, root), errno.errorcode.get(e.errno)))):
        dirs.sort()
        for name in sorted(dirs + files):
            p = os.path.join(dirpath, name)
            st = attempt(os.lstat, p)
            if isinstance(st, str):
                out.append([os.path.relpath(p, root), st])
                continue
            ent = [os.path.relpath(p, root), oct(st.st_mode), st.st_nlink, st.st_uid, st.st_gid]
            if stat.S_ISREG(st.st_mode):
                ent += [st.st_size, attempt(content, p)]
            elif stat.S_ISLNK(st.st_mode):
                ent.append(os.readlink(p))
            if not stat.S_ISLNK(st.st_mode):
                ent.append(attempt(lambda q: sorted(os.listxattr(q, follow_symlinks=False)), p))
            out.append(ent)
    return out + sorted(walk_errors)


def first_difference(a, b):
    for x, y in zip(a, b):
        if x != y:
            return "native %s, mount %s" % (x, y)
    return "native has %d entries, mount %d" % (len(a), len(b))


def run_seed(native, mount, seed, nops, txn):
    rel = os.path.join("s%d" % seed, "w", "t")
    os.makedirs(os.path.join(native, rel))
    os.makedirs(os.path.join(mount, rel))
    main_dir = os.path.join(mount, rel)
    if txn:
        top = os.path.abspath(mount)
        while not os.path.ismount(top):
            top = os.path.dirname(top)
        view = os.path.join(top, ".txdir", "txn", "nsdiff%d" % seed)
        os.mkdir(view)
        mount_dir = os.path.join(view, "root", os.path.relpath(main_dir, top))
    else:
        mount_dir = main_dir
    a, b = Side(os.path.join(native, rel)), Side(mount_dir)
    rng = random.Random(seed)
    try:
        for i in range(nops):
            o = gen_op(rng, a)
            ra, rb = a.apply(o), b.apply(o)
            if ra != rb:
                return "op %d %s: native %s, mount %s" % (i, o, ra, rb)
            if i % 50 == 49 or i == nops - 1:
                ta, tb = tree(a.root), tree(b.root)
                if ta != tb:
                    return "after op %d %s: %s" % (i, o, first_difference(ta, tb))
    finally:
        a.close_all()
        b.close_all()
    if txn:
        try:
            with open(os.path.join(view, "ctl"), "w") as f:
                f.write("commit\n")
        except OSError as e:
            with open(os.path.join(view, "status")) as f:
                return "commit: %s (%s)" % (e.strerror, f.read().strip())
        ta, tm = tree(a.root), tree(main_dir)
        if ta != tm:
            return "after commit: %s" % first_difference(ta, tm)
    return None


def main():
    if len(sys.argv) not in (6, 7) or (len(sys.argv) == 7 and sys.argv[6] != "--txn"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    native, mount = sys.argv[1], sys.argv[2]
    first, nseeds, nops = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    txn = len(sys.argv) == 7
    label = "txn view" if txn else "main tree"
    passed = failed = 0
    for seed in range(first, first + nseeds):
        why = run_seed(native, mount, seed, nops, txn)
        if why:
            failed += 1
            print("not ok - nsdiff %s seed %d: %s" % (label, seed, why))
        else:
            passed += 1
            print("ok - nsdiff %s seed %d: %d operations" % (label, seed, nops))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
