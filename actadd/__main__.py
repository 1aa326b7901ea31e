"""``python -m actadd``: the studies' command line (needs ``pip install 'actadd[studies]'``).

The command line imports each command's packages only once that command runs (a usage error
costs no torch), so a core-only install learns what to install from the first command it
tries, not from the import of the command line itself.
"""

import sys

try:
    from actadd.studies.pipeline.cli import main

    status = main()
except ModuleNotFoundError as err:  # the core alone has no command line: a studies package is missing
    sys.exit(f"python -m actadd needs the studies extra: pip install 'actadd[studies]' ({err})")
sys.exit(status)
