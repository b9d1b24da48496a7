"""The bottom layer: exit codes and errors, where output goes, atomic files and the cache directory.

No third-party imports but Rich (console)."""
