"""Write every attack of the hostile corpus as DIR/<name>.eml:
`uv run python -m tests.hostile.write DIR`, then try one with `vanthu inspect DIR/x.eml`."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.hostile import attacks


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.hostile.write DIR", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    folder.mkdir(parents=True, exist_ok=True)
    for attack in attacks():
        (folder / f"{attack.name}.eml").write_bytes(attack.build())
    print(f"{len(attacks())} mails written to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
