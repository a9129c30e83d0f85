"""The supervisor: one per bus. It owns topic metadata and the rings, watches
client liveness, and serves the control socket. It is never on the data path."""
from .supervisor import Supervisor, serve

__all__ = ["Supervisor", "serve"]
