"""cffi API-mode build of the C core: the cdef is shmbus.h itself, minus its
preprocessor lines, so no constant or signature is ever copied by hand."""
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).parent
HEADER = (HERE / "shmbus.h").read_text()

ffibuilder = FFI()
ffibuilder.cdef("\n".join(line for line in HEADER.splitlines() if not line.lstrip().startswith("#")))
ffibuilder.set_source(
    "shmbus._native._core",
    '#include "shmbus.h"',
    sources=[str(HERE / "ring.c"), str(HERE / "frame.c"), str(HERE / "control.c")],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
