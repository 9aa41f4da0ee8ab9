#!/usr/bin/env python3
"""Summarise an Autobahn (kosoku) report directory and decide pass/fail.

Reads DIR/index.json, whose shape is

    {AGENT: {CASE_ID: {"behavior": ..., "behaviorClose": ...,
                       "remoteCloseCode": int|null, "duration": ms,
                       "reportfile": "<agent>_case_1_1_1.json"}}}

where AGENT is the server's `Server` header, and DIR/<reportfile> holds the
per-case details (description, result, resultClose, ...).

Prints counts of `behavior` and `behaviorClose`, a per-group table (1.*, 2.*,
... 13.*), the slowest cases and every failing case, then a closing line
"conformance: N passed, N failed". Exit status: 0 pass, 1 failing cases or
fewer cases than expected, 2 no usable index.json.

Failing means behavior FAILED (or kosoku's ERROR: the case could not run), or a
behaviorClose of FAILED, WRONG CODE, UNCLEAN or FAILED BY CLIENT; any verdict
this script does not know also counts as failing. UNIMPLEMENTED (compression
not negotiated) passes unless --fail-on-unimplemented is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

BEHAVIOR_ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR"]
CLOSE_ORDER = ["OK", "INFORMATIONAL", "FAILED", "WRONG CODE", "UNCLEAN", "FAILED BY CLIENT"]
BEHAVIOR_PASS = {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"}
CLOSE_PASS = {"OK", "INFORMATIONAL"}


def sort_key(case_id: str) -> list[int]:
    try:
        return [int(p) for p in case_id.split(".")]
    except ValueError:
        return [1 << 30]


# Verdicts always shown, even at zero, so the tables keep the same columns.
BEHAVIOR_ALWAYS = {"OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"}
CLOSE_ALWAYS = {"OK", "INFORMATIONAL", "FAILED"}


def ordered(counter: Counter, order: list[str], always: set[str] = frozenset()) -> list[str]:
    return [k for k in order if k in counter or k in always] + sorted(k for k in counter if k not in order)


def one_line(text: object, limit: int = 160) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def load_cases(outdir: Path) -> tuple[dict[str, dict], list[str]]:
    index = json.loads((outdir / "index.json").read_text())
    if not isinstance(index, dict):
        raise ValueError("index.json is not an object")
    cases: dict[str, dict] = {}
    for agent, by_case in index.items():
        if not isinstance(by_case, dict):
            raise ValueError(f"index.json agent {agent!r} is not an object")
        for case_id, entry in by_case.items():
            cases[case_id] = dict(entry, agent=agent)
    return cases, list(index)


def details(outdir: Path, entry: dict) -> dict:
    name = entry.get("reportfile")
    if not name:
        return {}
    try:
        return json.loads((outdir / name).read_text())
    except (OSError, ValueError):
        return {}


def table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, r in enumerate(rows):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", type=Path, help="kosoku output directory (holds index.json)")
    ap.add_argument("--expected", type=int, default=517, help="minimum number of cases that must have run")
    ap.add_argument("--output", type=Path, help="also write the summary to this file")
    ap.add_argument("--fail-on-unimplemented", action="store_true", help="count UNIMPLEMENTED as failing")
    args = ap.parse_args()

    lines: list[str] = []
    emit = lines.append

    def finish(code: int) -> int:
        text = "\n".join(lines) + "\n"
        sys.stdout.write(text)
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(text)
        return code

    try:
        cases, agents = load_cases(args.outdir)
    except (OSError, ValueError) as e:
        emit(f"conformance: no usable report in {args.outdir}: {e}")
        emit("conformance: 0 passed, 1 failed")
        return finish(2)

    behavior_pass = BEHAVIOR_PASS - ({"UNIMPLEMENTED"} if args.fail_on_unimplemented else set())
    ids = sorted(cases, key=sort_key)
    beh = Counter(cases[c].get("behavior", "?") for c in ids)
    close = Counter(cases[c].get("behaviorClose", "?") for c in ids)
    failing = [
        c for c in ids
        if cases[c].get("behavior") not in behavior_pass or cases[c].get("behaviorClose") not in CLOSE_PASS
    ]

    emit(f"Autobahn conformance report: {args.outdir}")
    emit(f"agent(s): {', '.join(repr(a) for a in agents)}; cases run: {len(ids)} (expected {args.expected})")
    total_ms = sum(int(cases[c].get("duration") or 0) for c in ids)
    emit(f"sum of case durations: {total_ms / 1000:.1f} s")
    emit("")

    emit("behavior:      " + ", ".join(f"{k}={beh[k]}" for k in ordered(beh, BEHAVIOR_ORDER, BEHAVIOR_ALWAYS)))
    emit("behaviorClose: " + ", ".join(f"{k}={close[k]}" for k in ordered(close, CLOSE_ORDER, CLOSE_ALWAYS)))
    emit("")

    groups: dict[str, list[str]] = {}
    for c in ids:
        groups.setdefault(c.split(".")[0], []).append(c)
    bcols = ordered(beh, BEHAVIOR_ORDER, BEHAVIOR_ALWAYS)
    ccols = ordered(close, CLOSE_ORDER, CLOSE_ALWAYS)
    rows = [["group", "cases"] + bcols + [f"close:{k}" for k in ccols]]
    for g in sorted(groups, key=lambda s: sort_key(s)):
        gb = Counter(cases[c].get("behavior", "?") for c in groups[g])
        gc = Counter(cases[c].get("behaviorClose", "?") for c in groups[g])
        rows.append([f"{g}.*", str(len(groups[g]))] + [str(gb[k]) for k in bcols] + [str(gc[k]) for k in ccols])
    rows.append(["all", str(len(ids))] + [str(beh[k]) for k in bcols] + [str(close[k]) for k in ccols])
    lines.extend(table(rows))
    emit("")

    slow = sorted(ids, key=lambda c: -int(cases[c].get("duration") or 0))[:5]
    emit("slowest cases: " + ", ".join(f"{c} {int(cases[c].get('duration') or 0) / 1000:.1f}s" for c in slow))
    emit("")

    problems: list[str] = []
    if failing:
        emit(f"FAILING CASES ({len(failing)}):")
        for c in failing:
            e = cases[c]
            d = details(args.outdir, e)
            emit(f"  {c}: behavior={e.get('behavior')} behaviorClose={e.get('behaviorClose')} "
                 f"remoteCloseCode={e.get('remoteCloseCode')}")
            if d.get("description"):
                emit(f"      description: {one_line(d['description'])}")
            if d.get("result"):
                emit(f"      result: {one_line(d['result'])}")
            if d.get("resultClose") and d.get("resultClose") != d.get("result"):
                emit(f"      resultClose: {one_line(d['resultClose'])}")
        emit("")
        problems.append(f"{len(failing)} failing case(s)")
    if beh.get("UNIMPLEMENTED") and not args.fail_on_unimplemented:
        unimpl = sorted({c.rsplit('.', 1)[0] for c in ids if cases[c].get("behavior") == "UNIMPLEMENTED"}, key=sort_key)
        emit(f"note: {beh['UNIMPLEMENTED']} case(s) UNIMPLEMENTED (not counted as failing): {', '.join(unimpl)}")
        emit("")
    if len(ids) < args.expected:
        problems.append(f"only {len(ids)} of {args.expected} expected cases ran")

    missing = max(args.expected - len(ids), 0)
    if problems:
        emit("RESULT: FAIL - " + "; ".join(problems))
    else:
        emit(f"RESULT: PASS - {len(ids)} cases, none failing")
    emit(f"conformance: {len(ids) - len(failing)} passed, {len(failing) + missing} failed")
    return finish(1 if problems else 0)


if __name__ == "__main__":
    sys.exit(main())
