"""Per-module figures of the last `make mutation` run, from mutmut's results in mutants/.

    python scripts/mutation_report.py           # a table (markdown) on stdout
    python scripts/mutation_report.py --json    # the same figures as JSON
    python scripts/mutation_report.py --survivors   # the surviving mutants, by function

Detected = killed + timeout (a mutant that makes the tests loop did not pass them: they ran past the
session's own limit, tests/mutation.py, or mutmut's), as a share of
the mutants checked (all of them after a complete run). Lines are the module's lines in rlvr_cli
(what the scope "covers"); mutants that no test reaches count against the score, as survivors do.
Seconds: each mutant's session (fork, pytest's start, its tests; mutmut's `durations_by_key`),
summed over the detected mutants and over the survivors (a survivor runs every test chosen for it;
a detected one stops at its first failing test): where a run's time goes.
Exit code 1 when a mutant of the scope has not been checked yet, or when there are no results at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import tomllib
from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.mutation import KILLS, read_kills  # noqa: E402  (what each session records)

STATUSES = ("killed", "timeout", "survived", "no tests", "suspicious", "segfault", "not checked")


def loops(root: Path = ROOT) -> set[str]:
    """The mutants whose tests a session stopped for running past its limit (mutmut sees a failure)."""
    kills = read_kills(root / "mutants" / KILLS)
    return {mutant for mutant, (_test, _before, looped) in kills.items() if looped}


def results(root: Path = ROOT) -> dict[str, dict]:
    """Each module of the scope -> mutmut's record of it in mutants/ ({} before it was mutated)."""
    scope = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["mutmut"]["only_mutate"]
    found = {}
    for source in scope:
        meta = root / "mutants" / f"{source}.meta"
        found[source] = json.loads(meta.read_text()) if meta.is_file() else {}
    return found


def module_figures(root: Path = ROOT) -> list[dict]:
    looped = loops(root)
    rows = []
    for source, record in results(root).items():
        counts: Counter[str] = Counter()
        seconds: Counter[str] = Counter()
        durations = record.get("durations_by_key", {})
        for key, code in record.get("exit_code_by_key", {}).items():
            status = "timeout" if key in looped and code is not None else status_by_exit_code[code]
            counts[status] += 1
            seconds["survived" if status == "survived" else "detected"] += durations.get(key, 0.0)
        total = sum(counts.values())
        detected = counts["killed"] + counts["timeout"]
        rows.append(
            {
                "module": source,
                "lines": len((root / source).read_text().splitlines()),
                "mutants": total,
                **{status: counts[status] for status in STATUSES},
                "other": total - sum(counts[s] for s in STATUSES),
                "detected": detected,
                "detected_pct": round(100 * detected / total, 1) if total else None,
                "seconds_detected": round(seconds["detected"], 1),
                "seconds_survived": round(seconds["survived"], 1),
            }
        )
    return rows


def survivors(root: Path = ROOT) -> dict[str, dict[str, list[int]]]:
    """module -> function (`Class.method` for methods) -> the numbers of its surviving mutants."""
    found: dict[str, dict[str, list[int]]] = {}
    for source, record in results(root).items():
        for key, code in record.get("exit_code_by_key", {}).items():
            if code is None or status_by_exit_code[code] != "survived":
                continue
            name, number = key.rsplit(".", 1)[1].rsplit("__mutmut_", 1)
            function = ".".join(p for p in name.removeprefix("x_").split("\u01c1") if p and p != "x")
            found.setdefault(source, {}).setdefault(function, []).append(int(number))
    return {m: {f: sorted(n) for f, n in sorted(fs.items())} for m, fs in found.items()}


def summary(rows: list[dict]) -> dict:
    keys = ("lines", "mutants", "detected", *STATUSES, "other", "seconds_detected", "seconds_survived")
    total = {key: sum(r[key] for r in rows) for key in keys}
    total["detected_pct"] = round(100 * total["detected"] / total["mutants"], 1) if total["mutants"] else None
    return total


def checked_pct(row: dict) -> str:
    """Detected among the mutants checked so far (all of them after a complete run)."""
    checked = row["mutants"] - row["not checked"]
    return f"{100 * row['detected'] / checked:.1f} %" if checked else "-"


def markdown(rows: list[dict], total: dict) -> str:
    head = (
        "| module | lines | mutants | killed | timeout | survived | no tests | not checked | detected "
        "| test s (detected / survived) |"
    )
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in [*rows, {"module": "**all**", **total}]:
        name = r["module"].removeprefix("rlvr_cli/")
        lines.append(
            f"| {name if name.startswith('**') else f'`{name}`'} | {r['lines']:,} | {r['mutants']:,} | "
            f"{r['killed']:,} | {r['timeout']:,} | {r['survived']:,} | {r['no tests']:,} | "
            f"{r['not checked']:,} | {checked_pct(r)} | "
            f"{r['seconds_detected']:,.0f} / {r['seconds_survived']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants by function")
    args = parser.parse_args()
    if not any((ROOT / "mutants").glob("**/*.py.meta")):
        print("error: no mutation results in mutants/: run `make mutation` first", file=sys.stderr)
        return 1
    if args.survivors:
        found = survivors()
        lines = [
            f"{module.removeprefix('rlvr_cli/')}  {function}  {', '.join(map(str, numbers))}"
            for module, functions in found.items()
            for function, numbers in functions.items()
        ]
        print(json.dumps(found, indent=2) if args.json else "\n".join(lines))
        return 0
    rows = module_figures()
    total = summary(rows)
    print(json.dumps({"modules": rows, "all": total}, indent=2) if args.json else markdown(rows, total))
    if total["not checked"]:
        print(f"{total['not checked']} mutants not checked yet: run `make mutation`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
