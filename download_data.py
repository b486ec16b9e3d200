#!/usr/bin/env python3
"""`deepcurator download` under the original project's script name; same flags."""

from deepcurator.cli import script

if __name__ == "__main__":
    script("download")
