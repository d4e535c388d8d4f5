"""Print the mutation score of the last `mutmut run` as its last line:
`mutation score: KILLED/TOTAL killed (P%)`, after the survivors (one line each).

A mutant that made the tests time out (a hang) counts as detected, as in other mutation
tools: the suite did not pass with it. Survivors whose every changed line is a logging call
(``log.debug(...)`` ... ``log.exception``:
the text or arguments of a log record, which no behaviour depends on) are listed apart as
equivalent and left out of TOTAL; the raw score, with them, is printed too.
"""

from __future__ import annotations

import re
import subprocess
import sys

_LOG_CALL = re.compile(r"^\s*log\.(debug|info|warning|error|exception)\(")


def _only_log_text(name: str) -> bool:
    """Whether every line the mutant changes is a logging call, or an argument line of a
    logging call that spans several lines (found from the diff's context above it)."""
    diff = subprocess.run(
        ["mutmut", "show", name], capture_output=True, text=True, check=False
    ).stdout
    lines = [
        line
        for line in diff.splitlines()
        if line[:1] in " +-" and not line.startswith(("+++", "---"))
    ]
    changed = [i for i, line in enumerate(lines) if line[:1] in "+-" and line[1:].strip()]
    if not changed:
        return False
    for i in changed:
        text = lines[i][1:]
        if _LOG_CALL.match(text):
            continue
        indent = len(text) - len(text.lstrip())
        opener = next(
            (
                lines[j][1:]
                for j in range(i - 1, -1, -1)
                if lines[j][:1] == " "
                and lines[j][1:].strip()
                and len(lines[j][1:]) - len(lines[j][1:].lstrip()) < indent
            ),
            "",
        )
        if not (_LOG_CALL.match(opener) and opener.rstrip().endswith("(")):
            return False
    return True


def _module(name: str) -> str:
    """The module a mutant belongs to: ``pkg.mod.xǁClassǁmethod__mutmut_3`` -> ``pkg.mod``."""
    return name.split(".x", 1)[0]


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
    killed = sum(s in ("killed", "timeout") for s in counted.values())
    timeouts = sum(s == "timeout" for s in counted.values())
    survivors = sorted(n for n, s in counted.items() if s not in ("killed", "timeout"))
    logs = [n for n in survivors if counted[n] == "survived" and _only_log_text(n)]
    for name in survivors:
        if name not in logs:
            print(f"  {counted[name]}: {name}")
    for name in logs:
        print(f"  equivalent (log text only): {name}")
    for module in sorted({_module(n) for n in counted}):
        names = [n for n in counted if _module(n) == module and n not in logs]
        if not names:
            continue
        detected = sum(counted[n] in ("killed", "timeout") for n in names)
        print(
            f"  {module}: {detected}/{len(names)} detected ({100.0 * detected / len(names):.1f}%)"
        )
    raw_total = len(counted)
    raw = 100.0 * killed / raw_total if raw_total else 0.0
    print(
        f"raw: {killed}/{raw_total} detected ({raw:.1f}%; {timeouts} by a timeout), "
        f"{len(logs)} of the rest log text only"
    )
    total = raw_total - len(logs)
    share = 100.0 * killed / total if total else 0.0
    print(f"mutation score: {killed}/{total} killed ({share:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
