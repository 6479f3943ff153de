"""`python -m harness.record [--check]`: regenerate (or check) schema.json and docs/record.md."""

from __future__ import annotations

import sys

from harness.record import publish


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        stale = publish.stale()
        for p in stale:
            print(f"stale: {p} (run `python -m harness.record`)", file=sys.stderr)
        return 1 if stale else 0
    if argv:
        print("usage: python -m harness.record [--check]", file=sys.stderr)
        return 2
    for p in publish.write():
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
