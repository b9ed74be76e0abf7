#!/usr/bin/env python3
"""tests/mount/records_comm.py MNT MOUNTCTL — records.sh's comm case: this
process names itself b'a\\nb\\\\c\\xff' (prctl PR_SET_NAME), takes lease
cmdl and prints one JSON line: the owner file's bytes (as latin-1), the
command of info.json and of `mountctl lease list --json`, each as
os.fsencode of the decoded name (latin-1), then releases the lease."""
import ctypes, json, os, subprocess, sys

M, MC = sys.argv[1], sys.argv[2]
ctypes.CDLL(None).prctl(15, b"a\nb\\c\xff", 0, 0, 0)
d = f"{M}/.txdir/leases/active/{os.getpid()}/cmdl"
os.mkdir(d)
try:
    owner = open(d + "/owner", "rb").read()
    info = json.load(open(d + "/info.json"))["command"]
    out = subprocess.run([MC, "lease", "list", M, "--json"], capture_output=True, timeout=30).stdout
    listed = [x.get("command") for x in json.loads(out)["leases"] if x.get("name") == "cmdl"]
    print(json.dumps({
        "owner": owner.decode("latin-1"),
        "info": os.fsencode(info).decode("latin-1"),
        "list": [os.fsencode(c).decode("latin-1") for c in listed if isinstance(c, str)],
    }))
finally:
    os.rmdir(d)
