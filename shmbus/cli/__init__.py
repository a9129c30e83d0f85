"""The `shmbus` command: subcommands that mirror Kafka's tools and kcat."""
from .main import main

__all__ = ["main"]
