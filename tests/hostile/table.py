"""Print the table of attacks and what vanthu does now with each (markdown):
`uv run python -m tests.hostile.table`. Each attack runs on a fresh database."""

from __future__ import annotations

import sys
import tempfile
import traceback
from pathlib import Path

from tests.desk import Desk
from tests.hostile import attacks, run


def main() -> int:
    failed = 0
    print("| attack | the sender tries | vanthu | holds |")
    print("|---|---|---|---|")
    for attack in attacks():
        with tempfile.TemporaryDirectory() as tmp:
            try:
                attack.check(run(Desk(Path(tmp)), attack.build()))
                verdict = "yes"
            except Exception:  # the table reports any failure, then goes on
                failed += 1
                verdict = "NO: " + traceback.format_exc().strip().splitlines()[-1][:80]
        print(f"| {attack.name} | {attack.tries} | {attack.shows} | {verdict} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
