"""shmbus demo: placeholder registered below, filled in by the demo module."""
