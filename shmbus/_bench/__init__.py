"""Benchmarks of shmbus and its peers, between real processes (private). bench/run.py
and `shmbus bench` are two front ends over the same code.

harness.py        the process harness (spawn workers, a barrier, time caps) and the
                  result records of throughput, ping-pong and one-way latency
shmbus_runs.py    shmbus's own workers, the table of shmbus modes (one row per way in
                  and out: send / poll_many, send_many / poll_many, for msg in c, ...)
peers.py          the peers' workers and the table of peers (multiprocessing, pyzmq,
                  faster-fifo, iceoryx2 via iceoryx2_peer.py)
sleeping.py       latency to a sleeping consumer, and the posix-semaphore floor
fixed_rate.py     latency under load at a fixed rate, coordinated-omission corrected
idle.py           the idle cost of a supervisor and waiting consumers
durable.py        what archiving costs (against dd, against memory-only)
suite.py          what one run measures (Plan) and running it interleaved
report.py         tables, ratios, issue 8's targets, the JSON document
plot.py           latency percentile curves and throughput bars (matplotlib)
"""
