"""Helpers shared by the test suite and the child processes it starts, one module per
concern; this package only re-exports them, so tests write `buskit.make_value`.

Kept apart from conftest.py so that child scripts (buskit/child.py) can import the
same record format the tests check, and so test modules import helpers explicitly
instead of reaching into conftest.
"""
from .leaks import (STOP_TIMEOUT, kill_processes, leftovers_after_stop, new_paths, processes_mentioning,
                    reap_if_child, shm_leftovers, stop_bus, supervisor_process, threads_left, unique_bus_name,
                    unlink_shm, wait_gone, wait_until)
from .processes import CHILD_SCRIPT, Child, Children, freeze, run_cli
from .reading import Collector, cpu_seconds, read_exact
from .values import check_value, make_value, reference_murmur2

__all__ = [
    "STOP_TIMEOUT", "kill_processes", "leftovers_after_stop", "new_paths", "processes_mentioning",
    "reap_if_child", "shm_leftovers", "stop_bus", "supervisor_process", "threads_left", "unique_bus_name",
    "unlink_shm", "wait_gone", "wait_until", "CHILD_SCRIPT", "Child", "Children", "freeze", "run_cli", "Collector",
    "cpu_seconds", "read_exact", "check_value", "make_value", "reference_murmur2",
]
