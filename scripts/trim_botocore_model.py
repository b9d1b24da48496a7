"""Write the trimmed SageMaker service model that `rlvr status` loads instead of botocore's full one.

botocore parses its whole SageMaker model (~400 KB gzipped, ~3,000 shapes) to create a client,
about a third of `rlvr status`'s start-up. rlvr calls three operations; this keeps those and the
shapes they reach, with every constraint (required, min, max, pattern, enum), which
`rlvr_cli/cloud/sagemaker/service_model.py` checks requests against; only documentation is dropped. botocore finds the file through its documented data path (AWS_DATA_PATH /
`data_path`), and takes endpoint rules and everything else from its own data.

    python scripts/trim_botocore_model.py     # after upgrading botocore; tests/test_service_model.py checks it
"""

from __future__ import annotations

import json
from pathlib import Path

import botocore.session

OPERATIONS = ("CreateTrainingJob", "DescribeTrainingJob", "StopTrainingJob")
TARGET = Path(__file__).resolve().parent.parent / "rlvr_cli" / "cloud" / "sagemaker" / "botocore_data"


def reachable_shapes(model: dict, names: list[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        shape = model["shapes"][name]
        for key in ("member", "key", "value"):
            if key in shape:
                stack.append(shape[key]["shape"])
        for member in shape.get("members", {}).values():
            stack.append(member["shape"])
    return seen


def trimmed(service: str = "sagemaker") -> tuple[str, dict]:
    loader = botocore.session.get_session().get_component("data_loader")
    version = loader.determine_latest_version(service, "service-2")
    model = loader.load_service_model(service, "service-2", api_version=version)
    operations = {name: model["operations"][name] for name in OPERATIONS}
    roots = [op[key]["shape"] for op in operations.values() for key in ("input", "output") if key in op]
    roots += [e["shape"] for op in operations.values() for e in op.get("errors", [])]
    shapes = {name: model["shapes"][name] for name in sorted(reachable_shapes(model, roots))}
    for shape in shapes.values():  # documentation is most of the size and unused at run time
        shape.pop("documentation", None)
        for member in shape.get("members", {}).values():
            member.pop("documentation", None)
    for op in operations.values():
        op.pop("documentation", None)
    return version, {
        "version": model.get("version", "2.0"),
        "metadata": model["metadata"],
        "operations": operations,
        "shapes": shapes,
    }


def main() -> None:
    version, model = trimmed()
    path = TARGET / "sagemaker" / version / "service-2.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(model, separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size:,} bytes, {len(model['shapes'])} shapes)")


if __name__ == "__main__":
    main()
