"""The ``sage`` command: start/stop the studio, its processes, share links and logs, and the per-area sub-commands."""
