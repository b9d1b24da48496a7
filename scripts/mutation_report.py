"""Per-module figures of the last `make mutation` run, from mutmut's results in mutants/.

    python scripts/mutation_report.py           # a table (markdown) on stdout
    python scripts/mutation_report.py --json    # the same figures as JSON
    python scripts/mutation_report.py --survivors   # the survivors no line of SURVIVORS explains
    python scripts/mutation_report.py --survivors --all   # every surviving mutant, by function

Detected = killed + timeout (a mutant that makes the tests loop did not pass them: they ran past the
session's own limit, tests/mutation.py, or mutmut's), as a share of
the mutants checked (all of them after a complete run). Lines are the module's lines in rlvr_cli
(what the scope "covers"); mutants that no test reaches count against the score, as survivors do.
Seconds: each mutant's session (fork, pytest's start, its tests; mutmut's `durations_by_key`),
summed over the detected mutants and over the survivors (a survivor runs every test chosen for it;
a detected one stops at its first failing test): where a run's time goes.
Survivors are explained in benchmarks/mutation-survivors.tsv (SURVIVORS), a line per function and
kind: `equivalent` (no input can tell the mutant from the code) or `accepted` (it changes behaviour,
and no test pins it, on purpose; MUTATION.md says why). The table counts them, and gives the share
detected of the mutants that are not equivalent; "unexplained" are survivors no line names, "stale"
mutants a line names that were detected (the line is wrong, or the code moved its numbers).
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
SURVIVORS = Path("benchmarks/mutation-survivors.tsv")
KINDS = ("equivalent", "accepted")


def numbers(text: str) -> list[int]:
    """`3, 6-8` -> [3, 6, 7, 8]."""
    found = []
    for part in text.replace(" ", "").split(","):
        first, _, last = part.partition("-")
        found.extend(range(int(first), int(last or first) + 1))
    return found


def explained(root: Path = ROOT) -> dict[tuple[str, str, int], str]:
    """(module, function, mutant number) -> `equivalent` or `accepted`, from SURVIVORS."""
    found: dict[tuple[str, str, int], str] = {}
    path = root / SURVIVORS
    if not path.is_file():
        return found
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 5 or fields[3] not in KINDS:
            raise ValueError(f"{path}:{lineno}: want module, function, mutants, {' or '.join(KINDS)}, why")
        module, function, listed, kind, _why = fields
        for number in numbers(listed):
            found[(f"rlvr_cli/{module}", function, number)] = kind
    return found


def mutant_of(key: str) -> tuple[str, int]:
    """mutmut's key -> (function, `Class.method` for methods; the mutant's number)."""
    name, number = key.rsplit(".", 1)[1].rsplit("__mutmut_", 1)
    return ".".join(p for p in name.removeprefix("x_").split("\u01c1") if p and p != "x"), int(number)


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
    listed = explained(root)
    rows = []
    for source, record in results(root).items():
        counts: Counter[str] = Counter()
        seconds: Counter[str] = Counter()
        unexplained: list[str] = []
        stale: list[str] = []
        durations = record.get("durations_by_key", {})
        for key, code in record.get("exit_code_by_key", {}).items():
            status = "timeout" if key in looped and code is not None else status_by_exit_code[code]
            counts[status] += 1
            seconds["survived" if status == "survived" else "detected"] += durations.get(key, 0.0)
            function, number = mutant_of(key)
            kind = listed.get((source, function, number))
            if status in ("survived", "no tests"):
                if kind:
                    counts[kind] += 1
                else:
                    unexplained.append(f"{function} {number}")
            elif kind and status in ("killed", "timeout"):
                stale.append(f"{function} {number}")
        total = sum(v for k, v in counts.items() if k not in KINDS)
        detected = counts["killed"] + counts["timeout"]
        judged = total - counts["not checked"] - counts["equivalent"]
        rows.append(
            {
                "module": source,
                "lines": len((root / source).read_text().splitlines()),
                "mutants": total,
                **{status: counts[status] for status in STATUSES},
                "other": total - sum(counts[s] for s in STATUSES),
                "detected": detected,
                "detected_pct": round(100 * detected / total, 1) if total else None,
                "equivalent": counts["equivalent"],
                "accepted": counts["accepted"],
                "unexplained": unexplained,
                "stale": stale,
                "detected_of_not_equivalent_pct": round(100 * detected / judged, 1) if judged else None,
                "seconds_detected": round(seconds["detected"], 1),
                "seconds_survived": round(seconds["survived"], 1),
            }
        )
    return rows


def survivors(root: Path = ROOT, *, unexplained_only: bool = False) -> dict[str, dict[str, list[int]]]:
    """module -> function (`Class.method` for methods) -> the numbers of its surviving mutants."""
    listed = explained(root) if unexplained_only else {}
    found: dict[str, dict[str, list[int]]] = {}
    for source, record in results(root).items():
        for key, code in record.get("exit_code_by_key", {}).items():
            if code is None or status_by_exit_code[code] not in ("survived", "no tests"):
                continue
            function, number = mutant_of(key)
            if (source, function, number) not in listed:
                found.setdefault(source, {}).setdefault(function, []).append(number)
    return {m: {f: sorted(n) for f, n in sorted(fs.items())} for m, fs in found.items()}


def summary(rows: list[dict]) -> dict:
    keys = ("lines", "mutants", "detected", *STATUSES, "other", "equivalent", "accepted")
    total = {key: sum(r[key] for r in rows) for key in (*keys, "seconds_detected", "seconds_survived")}
    total["unexplained"] = [f"{r['module']} {m}" for r in rows for m in r["unexplained"]]
    total["stale"] = [f"{r['module']} {m}" for r in rows for m in r["stale"]]
    total["detected_pct"] = round(100 * total["detected"] / total["mutants"], 1) if total["mutants"] else None
    judged = total["mutants"] - total["not checked"] - total["equivalent"]
    total["detected_of_not_equivalent_pct"] = round(100 * total["detected"] / judged, 1) if judged else None
    return total


def checked_pct(row: dict) -> str:
    """Detected among the mutants checked so far (all of them after a complete run)."""
    checked = row["mutants"] - row["not checked"]
    return f"{100 * row['detected'] / checked:.1f} %" if checked else "-"


def markdown(rows: list[dict], total: dict) -> str:
    head = (
        "| module | lines | mutants | killed | timeout | survived | no tests | not checked | detected "
        "| equivalent / accepted / unexplained | detected of not equivalent | test s (detected / survived) |"
    )
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in [*rows, {"module": "**all**", **total}]:
        name = r["module"].removeprefix("rlvr_cli/")
        judged = r["detected_of_not_equivalent_pct"]
        lines.append(
            f"| {name if name.startswith('**') else f'`{name}`'} | {r['lines']:,} | {r['mutants']:,} | "
            f"{r['killed']:,} | {r['timeout']:,} | {r['survived']:,} | {r['no tests']:,} | "
            f"{r['not checked']:,} | {checked_pct(r)} | "
            f"{r['equivalent']:,} / {r['accepted']:,} / {len(r['unexplained']):,} | "
            f"{'-' if judged is None else f'{judged:.1f} %'} | "
            f"{r['seconds_detected']:,.0f} / {r['seconds_survived']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument(
        "--survivors", action="store_true", help=f"list the survivors {SURVIVORS} does not explain"
    )
    parser.add_argument("--all", action="store_true", help="with --survivors: every survivor")
    args = parser.parse_args()
    if not any((ROOT / "mutants").glob("**/*.py.meta")):
        print("error: no mutation results in mutants/: run `make mutation` first", file=sys.stderr)
        return 1
    try:
        if args.survivors:
            found = survivors(unexplained_only=not args.all)
            lines = [
                f"{module.removeprefix('rlvr_cli/')}  {function}  {', '.join(map(str, numbers))}"
                for module, functions in found.items()
                for function, numbers in functions.items()
            ]
            print(json.dumps(found, indent=2) if args.json else "\n".join(lines))
            return 0
        rows = module_figures()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = summary(rows)
    print(json.dumps({"modules": rows, "all": total}, indent=2) if args.json else markdown(rows, total))
    for what, mutants in (
        ("not explained in", total["unexplained"]),
        ("detected, yet listed in", total["stale"]),
    ):
        if mutants:
            print(f"{len(mutants)} mutants {what} {SURVIVORS}: {', '.join(mutants[:20])}", file=sys.stderr)
    if total["not checked"]:
        print(f"{total['not checked']} mutants not checked yet: run `make mutation`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
