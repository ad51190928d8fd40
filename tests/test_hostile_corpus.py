"""Every attack of the hostile corpus (`tests/hostile/`), each on a fresh real database with
the shipped rules: the behaviour it names, checked on what the pipeline actually did."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.desk import Desk
from tests.hostile import Attack, attacks, run

ATTACKS = attacks()


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack(attack: Attack, tmp_path: Path) -> None:
    attack.check(run(Desk(tmp_path), attack.build()))


def test_the_corpus_is_not_empty() -> None:
    assert len(ATTACKS) >= 1
