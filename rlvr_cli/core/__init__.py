"""The bottom layer: exit codes and errors, where output goes, atomic files. No third-party imports
but Rich (console)."""
