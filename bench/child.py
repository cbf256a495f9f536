"""What the benchmarks that measure one step in a fresh process share: the child call and the command line."""
from __future__ import annotations

import json
import subprocess
import sys


def child(script: str, name: str) -> dict:
    """Run `script --step name` in a new Python process (its peak memory is then its own) and read its JSON line."""
    out = subprocess.run([sys.executable, script, "--step", name], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(rows, step) -> None:
    """`--step NAME`: print step(NAME) as JSON (the child); else print rows(which) as `figure | value | target`."""
    if len(sys.argv) > 2 and sys.argv[1] == "--step":
        print(json.dumps(step(sys.argv[2])))
    else:
        for r in rows(sys.argv[1] if len(sys.argv) > 1 else "all"):
            print(f"{r['figure']} | {r['value']} | {r['target']}")
