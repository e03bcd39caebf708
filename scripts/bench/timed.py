"""Runs a command; prints {"seconds", "peak_rss_bytes"} of it as one JSON line on stderr."""
import json
import resource
import subprocess
import sys
import time

t0 = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
dt = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"seconds": dt, "peak_rss_bytes": rss, "rc": rc}), file=sys.stderr)
sys.exit(rc)
