"""Regenerate the README's configuration reference from the pydantic recipe model.

python scripts/readme_reference.py        # tests/test_config.py checks the README matches
"""

from __future__ import annotations

from pathlib import Path

from rlvr_cli.config.recipe import reference_table

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def main() -> None:
    text = README.read_text(encoding="utf-8")
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    table = ["| key | type | default | description |", "| --- | --- | --- | --- |", *reference_table()]
    README.write_text(f"{before}{START}\n" + "\n".join(table) + f"\n{END}{after}", encoding="utf-8")
    print(f"updated {README}")


if __name__ == "__main__":
    main()
