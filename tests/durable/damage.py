"""Damaging a bus's files the way a careless operator or a failing disk does: with its
supervisor stopped (cleanly) or killed (SIGKILL), straight into the files."""
import os
import signal

from shmbus._backend import walk_frames
from shmbus._segment_files import list_segments, segment_path

import buskit

HEADER = 48     # sb_frame_header: word0 (length) 0-8, CRC 8-12, the CRC covers 12 to the end
VALUE_AT = HEADER  # of a record without key or headers


def partition_dir(paths, topic, partition=0):
    return os.path.join(paths.data_dir, "topics", topic, str(partition))


def segment_files(paths, topic, partition=0):
    directory = partition_dir(paths, topic, partition)
    return [segment_path(directory, base) for base in list_segments(directory)]


def frames(path):
    """(position, aligned size, offset) of every frame of an intact segment file."""
    with open(path, "rb") as f:
        data = f.read()
    return [(at, size, header.offset) for at, size, header in walk_frames(data)]


def frame_of(path, offset):
    """(position, aligned size) of the frame holding offset."""
    for at, size, frame_offset in frames(path):
        if frame_offset == offset:
            return at, size
    raise AssertionError(f"offset {offset} is not in {path}")


def flip_bit(path, position, bit=4):
    with open(path, "r+b") as f:
        f.seek(position)
        byte = f.read(1)[0]
        f.seek(position)
        f.write(bytes([byte ^ (1 << bit)]))


def write_at(path, position, data):
    with open(path, "r+b") as f:
        f.seek(position)
        f.write(data)


def stop_cleanly(bus, paths):
    bus.stop_supervisor()
    assert buskit.wait_until(lambda: buskit.supervisor_process(paths) is None, 20)


def kill_supervisor(paths):
    """SIGKILL: the rings stay in /dev/shm, no clean-shutdown marker."""
    proc = buskit.supervisor_process(paths)
    os.kill(proc.pid, signal.SIGKILL)
    buskit.reap_if_child(proc.pid)
    assert buskit.wait_gone(proc, 10)


def supervisor_log(paths):
    with open(paths.log_file, errors="replace") as f:
        return f.read()


def read_until_empty(consumer, timeout=1.0):
    messages = []
    while True:
        batch = consumer.poll_many(10000, timeout=timeout)
        if not batch:
            return messages
        messages.extend(batch)
