"""The mutation check: does the suite catch the bugs it exists for?

Each mutant below is one small, realistic bug -- one line of C or Python changed in
a scratch copy of the repository (C mutants are rebuilt into the extension) -- and
the tests that should catch it. The check runs those tests against every mutant, one
at a time, and prints mutant / caught by / time and the score. A mutant that survives
is a bug the suite would let through: write the test that catches it.

    python tests/mutation/run.py                 # every mutant
    python tests/mutation/run.py -k claim,wrap   # the mutants whose name contains "claim" or "wrap"
    python tests/mutation/run.py --list

It is not part of the normal test run (it takes 20-40 minutes on two cores: one build
per C mutant and the named tests per mutant); see tests/README.md.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from mutants import MUTANTS, Mutant  # the list lives beside this file


def scratch_copy() -> str:
    """The repository, without .git and build leftovers, in a temporary directory."""
    target = tempfile.mkdtemp(prefix="shmbus-mutation-")
    ignore = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", ".pytest_cache", ".mypy_cache", "build")
    shutil.copytree(ROOT, os.path.join(target, "repo"), ignore=ignore, symlinks=True)
    return os.path.join(target, "repo")


def build(repo: str) -> Tuple[bool, str]:
    done = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=repo,
                          capture_output=True, text=True)
    return done.returncode == 0, done.stderr[-2000:]


def run_tests(repo: str, tests: Tuple[str, ...], timeout: float) -> Tuple[bool, str]:
    """(passed, the first failing test or why) for the tests against the scratch copy."""
    env = dict(os.environ, PYTHONPATH=repo)
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               "-o", "addopts=", *tests], cwd=repo, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    if done.returncode == 0:
        return True, ""
    if done.returncode < 0:
        return False, f"a test process crashed (signal {-done.returncode})"
    failed = [line.split(" ", 2)[1] for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return False, (failed[0] if failed else done.stdout.strip().splitlines()[-1] if done.stdout.strip() else
                   f"exit {done.returncode}")


def apply(repo: str, mutant: Mutant) -> str:
    path = os.path.join(repo, mutant.path)
    with open(path) as f:
        original = f.read()
    count = original.count(mutant.old)
    if count != 1:
        raise SystemExit(f"mutant {mutant.name}: its text occurs {count} times in {mutant.path} (must be once): "
                         f"update tests/mutation/mutants.py")
    with open(path, "w") as f:
        f.write(original.replace(mutant.old, mutant.new))
    return original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", default="", help="only the mutants whose name contains this (or one of these, "
                                               "comma-separated)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant's tests")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args()
    wanted = args.k.split(",")
    mutants = [m for m in MUTANTS if any(w in m.name for w in wanted)]
    if args.list:
        for m in mutants:
            print(f"{m.name:32s} {m.path}: {m.bug}")
        return 0
    repo = scratch_copy()
    print(f"scratch copy: {repo}", flush=True)
    ok, why = build(repo)
    if not ok:
        raise SystemExit(f"the unmutated copy does not build:\n{why}")
    # Every mutant's tests pass unmutated, or "caught" would mean nothing.
    baseline = sorted({t for m in mutants for t in m.tests})
    started = time.monotonic()
    passed, why = run_tests(repo, tuple(baseline), args.timeout * 3)
    if not passed:
        raise SystemExit(f"the tests fail without any mutant ({why}): fix them first")
    print(f"baseline: {len(baseline)} test files/ids pass unmutated ({time.monotonic() - started:.0f} s)", flush=True)
    rows: List[Tuple[str, str, float]] = []
    for mutant in mutants:
        started = time.monotonic()
        original = apply(repo, mutant)
        is_c = mutant.path.endswith((".c", ".h"))
        try:
            if is_c:
                ok, why = build(repo)
                if not ok:
                    raise SystemExit(f"mutant {mutant.name} does not compile (fix the mutant):\n{why}")
            survived, caught_by = run_tests(repo, mutant.tests, args.timeout)
        finally:
            with open(os.path.join(repo, mutant.path), "w") as f:
                f.write(original)
            if is_c:
                build(repo)
        seconds = time.monotonic() - started
        rows.append((mutant.name, "SURVIVED" if survived else caught_by, seconds))
        print(f"{mutant.name:32s} {'SURVIVED' if survived else 'caught by ' + caught_by}  ({seconds:.0f} s)",
              flush=True)
    caught = sum(1 for _, by, _ in rows if by != "SURVIVED")
    total_time = sum(s for _, _, s in rows)
    print()
    print("| mutant | caught by | time |")
    print("|---|---|---|")
    for name, by, seconds in rows:
        print(f"| {name} | {by} | {seconds:.0f} s |")
    print(f"\nscore: {caught}/{len(rows)} caught ({100 * caught / max(1, len(rows)):.0f} %), "
          f"{total_time / 60:.1f} min")
    if not args.keep:
        shutil.rmtree(os.path.dirname(repo), ignore_errors=True)
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
