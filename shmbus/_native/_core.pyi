# The compiled cffi module (build.py builds it from shmbus.h). Its functions and
# constants are what shmbus.h declares; only the shmbus._backend package uses them.
from typing import Any

ffi: Any
lib: Any
