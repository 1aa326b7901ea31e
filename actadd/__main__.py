"""``python -m actadd``: the studies' command line (needs ``pip install 'actadd[studies]'``)."""

import sys

try:
    from actadd.studies.pipeline.cli import main
except ImportError as err:  # the core alone has no command line
    sys.exit(f"python -m actadd needs the studies extra: pip install 'actadd[studies]' ({err})")

sys.exit(main())
