"""About a minute of chaos -- producers, group members and the supervisor SIGKILLed,
producers SIGSTOPped, some producers in pid namespaces of their own -- then a full
audit (tests/soak/chaos.py): every acknowledged record present once and in order,
nothing else, the group's coverage complete, nothing wedged."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "soak"))
from chaos import Soak  # noqa: E402

SECONDS = float(os.environ.get("SHMBUS_SOAK_SECONDS", "45"))


@pytest.mark.timeout(300)
def test_chaos_soak(bus_paths, tmp_path):
    soak = Soak(bus_paths, str(tmp_path / "soak"), SECONDS, seed=int.from_bytes(os.urandom(4), "little"),
                log=lambda *a: None)
    try:
        figures = soak.run()
    finally:
        soak.kill_all()
    print(figures)
    assert figures.acknowledged > 1000, figures
    assert figures.ok(), figures
    assert sum(figures.events.values()) >= 20, figures.events
