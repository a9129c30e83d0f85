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
    # One .c per concept of the core (_core.c is what cffi generates, not a source).
    sources=sorted(str(path) for path in HERE.glob("*.c") if not path.name.startswith("_")),
    include_dirs=[str(HERE)],
    # Hidden by default: only the cffi module init is exported, not the helpers the
    # C files share with each other.
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
