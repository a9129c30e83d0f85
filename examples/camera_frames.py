"""Camera frames with no copy on either side: a camera process writes each frame
straight into the ring (reserve), a viewer reads batches of frames as one numpy
array over the ring itself (poll_batch(copy=False)) and computes their brightness.
The topic is memory-only: a viewer slower than the camera skips frames (counted
by consumer.missed()) and never holds the camera back for more than a view's lease.

    python examples/camera_frames.py [frames]
"""
import multiprocessing as mp
import sys

import numpy as np

import shmbus

TOPIC = "camera"
HEIGHT, WIDTH = 240, 320
FRAME = np.dtype((np.uint8, (HEIGHT, WIDTH)))


def camera(frames):
    with shmbus.connect() as bus, bus.producer() as producer:
        for n in range(frames):
            with producer.reserve(TOPIC, FRAME.itemsize, partition=0) as buf:
                pixels = np.frombuffer(buf, np.uint8).reshape(HEIGHT, WIDTH)
                pixels[:] = n % 256          # "capture" into the ring: no frame object, no copy
    print(f"camera: wrote {frames} frames of {FRAME.itemsize:,} bytes in place")


def viewer(frames, ready):
    seen, revoked, wrong = 0, 0, 0
    with shmbus.connect() as bus, bus.consumer(TOPIC, auto_offset_reset="earliest") as consumer:
        consumer.position(shmbus.TopicPartition(TOPIC, 0))   # start at offset 0, then let the camera go
        ready.set()
        while seen + consumer.missed() < frames:
            batch = consumer.poll_batch(max_records=64, timeout=10.0, copy=False)
            if batch is None:
                raise SystemExit("viewer: no frames for 10 s")
            # One (n, HEIGHT, WIDTH) array viewing the ring (or a copy, when the viewer fell
            # too far behind: batch.zero_copy says which).
            images = batch.as_numpy(FRAME)
            brightness = images.mean(axis=(1, 2))
            mismatched = int(np.count_nonzero(brightness != batch.offsets % 256))
            try:
                batch.release()   # raises if a producer had to overwrite the frames meanwhile
            except shmbus.LeaseRevoked:
                revoked += 1      # the results may be from overwritten frames: drop them
            else:
                wrong += mismatched
            seen += len(batch)
        missed = consumer.missed()
    print(f"viewer: read {seen} frames ({missed} lapped before it read them), {revoked} batches revoked, "
          f"{wrong} frames not as written")
    if wrong:
        raise SystemExit(1)


if __name__ == "__main__":
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with shmbus.connect() as bus:
        if TOPIC not in bus.topics():
            bus.create_topic(TOPIC, partitions=1, ring_bytes=16 << 20, durable=False)
    ready = mp.Event()
    view = mp.Process(target=viewer, args=(frames, ready))
    view.start()
    ready.wait(30)
    camera(frames)
    view.join()
    with shmbus.connect() as bus:
        bus.delete_topic(TOPIC)
    sys.exit(view.exitcode)
