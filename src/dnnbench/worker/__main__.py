"""``python -m dnnbench.worker``: the worker contract (see the package), then an immediate exit:
tearing down torch's modules would take seconds of nobody's time."""

import os
import sys

from . import main

code = 1
try:
    code = main()
except BaseException:  # said in the log, whose tail is the sweep's error; os._exit below would drop it
    import traceback

    traceback.print_exc()
finally:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)
