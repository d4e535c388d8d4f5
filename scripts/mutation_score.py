"""Print the mutation score of the last `mutmut run` as its last line:
`mutation score: KILLED/TOTAL killed (P%)`, after the survivors (one line each)."""

from __future__ import annotations

import subprocess
import sys


def main() -> int:
    out = subprocess.run(
        ["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    statuses: dict[str, str] = {}
    for line in out.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and name:
            statuses[name] = status.strip()
    counted = {n: s for n, s in statuses.items() if s not in {"skipped", "not checked"}}
    killed = sum(s == "killed" for s in counted.values())
    for name, status in sorted(counted.items()):
        if status != "killed":
            print(f"  {status}: {name}")
    total = len(counted)
    share = 100.0 * killed / total if total else 0.0
    print(f"mutation score: {killed}/{total} killed ({share:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
