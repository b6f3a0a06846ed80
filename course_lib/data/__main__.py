"""``python -m course_lib.data {prepare,verify,reference}``: build, check or (maintainers) summarise the cache."""

from __future__ import annotations

import json
import sys

from .store import REFERENCE, VERIFY_RTOL, cache_summaries, verify_cache
from .templates import prepare


def _main(argv) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m course_lib.data")
    ap.add_argument("command", choices=["prepare", "verify", "reference"],
                    help="prepare: build the caches; verify: check them against data/reference_summaries.json; "
                         "reference: (maintainers) write that file from the current cache")
    ap.add_argument("--full", action="store_true", help="also build the 1 mm caches (full profile)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.command == "prepare":
        prepare(resolutions=(2, 1) if args.full else (2,), quiet=args.quiet)
    elif args.command == "verify":
        res = verify_cache()
        if not args.quiet:
            print(f"course data verified: {len(res['checked'])} cached files match the reference within "
                  f"rtol {VERIFY_RTOL:g} ({len(res['not_cached'])} not built yet)")
    else:
        REFERENCE.write_text(json.dumps(cache_summaries(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
