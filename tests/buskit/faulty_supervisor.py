"""A real supervisor whose fsyncs a test controls, for the durability tests that must see
flush() wait for the fsync itself and fail when it fails:

    python tests/buskit/faulty_supervisor.py serve BUS DATA_DIR CONTROL_DIR

Before every fsync of the process: while CONTROL_DIR/block exists it waits (after
creating CONTROL_DIR/blocked, so the test knows an fsync is being held); if
CONTROL_DIR/fail exists it raises EIO, as a failing disk does. Otherwise it is
`shmbus serve` (the command line carries "serve", the bus name and the data dir, so
the leak check and buskit.supervisor_process find it)."""
import errno
import os
import sys
import time

from shmbus._config import BusPaths
from shmbus._supervisor.supervisor import serve


def main():
    _, bus, data_dir, control = sys.argv[1:5]
    real_fsync = os.fsync

    def fsync(fd):
        if os.path.exists(os.path.join(control, "block")):
            open(os.path.join(control, "blocked"), "w").close()
            while os.path.exists(os.path.join(control, "block")):
                time.sleep(0.005)
        if os.path.exists(os.path.join(control, "fail")):
            raise OSError(errno.EIO, "injected fsync failure")
        real_fsync(fd)

    os.fsync = fsync
    serve(BusPaths.resolve(bus, data_dir))


if __name__ == "__main__":
    main()
