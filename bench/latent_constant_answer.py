"""Keep only the rows whose answer is the most common one (every split of a data directory).

A sanity task for the GRPO length reward: the answer never depends on the latent count, so every
group can be all-correct and the paper's penalty alone decides the latent count.

python bench/latent_constant_answer.py SRC_DIR DST_DIR
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.mkdir(parents=True, exist_ok=True)
    train = [json.loads(line) for line in (source / "train.jsonl").read_text().splitlines() if line]
    mode = statistics.mode(row["answer"] for row in train)
    for path in sorted(source.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line]
        kept = [row for row in rows if row["answer"] == mode]
        (target / path.name).write_text("".join(json.dumps(row) + "\n" for row in kept))
        print(f"{path.name}: kept {len(kept)} of {len(rows)} rows (answer {mode})")


if __name__ == "__main__":
    main()
