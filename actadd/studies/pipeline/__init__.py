"""Running the studies and publishing them: the papermill runner, the run report, the README
snapshot, the Colab badges, the benchmark and the command line (``python -m actadd``)."""

from pathlib import Path

# The repository the studies run in: notebooks/, figures/, runs/, results/, README.md.
REPO = Path(__file__).resolve().parents[3]

# The sizes of notebooks/profiles.yaml: here, where the command line can check --profile
# without importing the runner.
PROFILES = ("smoke", "default", "paper")
