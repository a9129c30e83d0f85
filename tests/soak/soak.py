"""The chaos soak, for as long as you like, on a throwaway bus:

    python tests/soak/soak.py --minutes 60 [--producers 3] [--members 2] [--seed N]

It prints what it did (kills and stalls by kind) and what the audit found (records
acknowledged and present, losses, duplicates, reorders, garbage, revoked records,
records below a commit no member handled, wedged partitions), and exits 1 if the audit
found anything. tests/crash/test_chaos_soak.py runs the same for about a minute."""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import buskit  # noqa: E402
from chaos import Soak  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shmbus-soak-") as tmp:
        paths = buskit.new_paths(buskit.unique_bus_name(), os.path.join(tmp, "data"))
        soak = Soak(paths, os.path.join(tmp, "work"), args.minutes * 60, producers=args.producers,
                    members=args.members, seed=args.seed)
        try:
            figures = soak.run()
        finally:
            soak.kill_all()
            problems = buskit.leftovers_after_stop(paths)
    print(f"{figures.seconds:.0f} s of chaos: " + ", ".join(f"{n} {kind}" for kind, n in figures.events.items()))
    print(f"records acknowledged {figures.acknowledged:,}, present {figures.present:,}; lost {figures.lost}, "
          f"duplicated {figures.duplicated}, reordered {figures.reordered}, garbage {figures.garbage}, "
          f"revoked (ClaimRevoked, absent as they must be) {figures.revoked}, below a commit but never handled "
          f"by the group {figures.unhandled_by_group}, wedged partitions {figures.wedged}")
    for problem in figures.problems + problems:
        print("problem:", problem)
    sys.exit(0 if figures.ok() and not problems else 1)


if __name__ == "__main__":
    main()
