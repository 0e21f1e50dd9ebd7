"""The sub-commands of the `meddistill` CLI (see model/cli.py)."""
