"""Benchmarks of shmbus and its peers, between real processes (private).

harness.py       the process harness (spawn workers, a barrier, time caps) and the
                 result records, for any transport
shmbus_runs.py   shmbus's own workers and measurements, run on that harness
"""
