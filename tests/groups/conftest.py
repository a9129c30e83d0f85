"""Group tests: the `members` fixture. The bus itself, and the check that it leaves
nothing behind, come from tests/conftest.py; helpers are in groupkit.py."""
import pytest

from groupkit import Members


@pytest.fixture
def members(bus_paths, tmp_path):
    """Start member processes; teardown kills what is left (before the bus's leak check)."""
    group = Members(bus_paths, str(tmp_path / "members"))
    yield group
    group.kill_all()
