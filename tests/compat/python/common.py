"""Shared helpers for the Python compatibility checks.

Each check is a script run as `check.py BOOTSTRAP`. It exits 0 when the round
trip worked, 77 for SKIP and 1 for FAIL; the reason is printed as the last
line of output, prefixed with `REASON: `, which run.sh shows on the
FAIL/SKIP line. Everything else printed is kept in the check's log.
"""

import os
import sys
import time
import traceback

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_SKIP = 77


class CheckFailed(Exception):
    pass


class CheckSkipped(Exception):
    pass


def topic(name):
    """A topic name unique to this run of the suite (run.sh sets the suffix)."""
    suffix = os.environ.get("COMPAT_SUFFIX") or "%d-%d" % (int(time.time()), os.getpid())
    return "compat-%s-%s" % (name, suffix)


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


_step = [""]


def step(what):
    """Name what the check does next; a failure's reason starts with it."""
    _step[0] = what
    log("== " + what)


def _reason(msg):
    return "%s: %s" % (_step[0], msg) if _step[0] else msg


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def run(main):
    """Run `main(bootstrap)` and turn its outcome into an exit status."""
    if len(sys.argv) != 2:
        print("usage: %s BOOTSTRAP" % sys.argv[0], file=sys.stderr)
        sys.exit(2)
    try:
        main(sys.argv[1])
    except CheckSkipped as e:
        print("REASON: %s" % _reason(e), flush=True)
        sys.exit(EXIT_SKIP)
    except CheckFailed as e:
        print("REASON: %s" % _reason(e), flush=True)
        sys.exit(EXIT_FAIL)
    except Exception as e:  # a client error is a failure with its message
        traceback.print_exc()
        print("REASON: %s" % _reason("%s: %s" % (type(e).__name__, str(e) or repr(e))), flush=True)
        sys.exit(EXIT_FAIL)
    sys.exit(EXIT_PASS)
