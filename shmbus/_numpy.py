"""numpy, which batches and arrays need (RecordBatch, send_array) and the rest of
shmbus does not: imported on first use, with an error that says how to get it."""
from types import ModuleType


def require(feature: str) -> ModuleType:
    try:
        import numpy
    except ImportError:
        raise ImportError(f"{feature} needs numpy, which is not installed: pip install 'shmbus[numpy]' "
                          f"(or pip install numpy)") from None
    return numpy
