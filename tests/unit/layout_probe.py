"""The ring's private layout (shmbus/_native/layout.h), as numbers a test can use to
put a ring in a state no live producer would leave it in at that exact place (a dead
producer's claim at the ring's end, say). Compiled from layout.h itself with cffi,
once per test session, so it follows the layout wherever it goes."""
import functools
import importlib.util
import os
import shutil
import sys
import tempfile

import shmbus

NATIVE = os.path.join(os.path.dirname(shmbus.__file__), "_native")

FIELDS = {
    "slot_bytes": "sizeof(struct slot)",
    "slot_page_at": "HEADER_PAGE",
    "slot_owner_pid": "offsetof(struct slot, owner_pid)",
    "slot_state": "offsetof(struct slot, state)",
    "slot_claim_pos": "offsetof(struct slot, claim_pos)",
    "slot_claim_frame_pos": "offsetof(struct slot, claim_frame_pos)",
    "slot_claim_end": "offsetof(struct slot, claim_end)",
    "slot_claim_offset": "offsetof(struct slot, claim_offset)",
    "slot_claim_count": "offsetof(struct slot, claim_count)",
    "header_lock": "offsetof(struct header, lock)",
    "header_tail": "offsetof(struct header, tail)",
    "header_next_offset": "offsetof(struct header, next_offset)",
    "claimed": "CLAIMED",
}


@functools.lru_cache(maxsize=None)
def layout():
    """{name: value} of FIELDS."""
    from cffi import FFI
    ffi = FFI()
    ffi.cdef("".join(f"static const long long {name};\n" for name in FIELDS))
    source = '#include "layout.h"\n' + "".join(
        f"static const long long {name} = (long long)({expr});\n" for name, expr in FIELDS.items())
    build = tempfile.mkdtemp(prefix="shmbus-layout-probe-")
    ffi.set_source("_shmbus_layout_probe", source, include_dirs=[NATIVE],
                   extra_compile_args=["-std=gnu11"])
    path = ffi.compile(tmpdir=build)
    spec = importlib.util.spec_from_file_location("_shmbus_layout_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.setdefault("_shmbus_layout_probe", module)
    values = {name: getattr(module.lib, name) for name in FIELDS}
    shutil.rmtree(build, ignore_errors=True)   # the loaded module no longer needs its file
    return values
