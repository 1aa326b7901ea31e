"""A traitlets config file for the kernels the runner starts (``--config=<this file>``), not a
module to import: traitlets runs it with ``get_config`` defined.

ipykernel's IPKernelApp logs "Kernel is running over TCP without encryption..." as a warning
from ``init_sockets`` whenever the transport is TCP without CurveZMQ keys, which is how
papermill starts every kernel, on loopback. Under the runner that is one line of noise per
notebook on the run's stderr; this filter drops that message and lets every other log line
of the kernel through.
"""

import logging

TCP_WARNING = "Kernel is running over TCP without encryption"


class NotTheTCPWarning(logging.Filter):
    """Passes every record except ipykernel's warning about an unencrypted TCP transport."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TCP_WARNING)


c = get_config()  # type: ignore[name-defined]  # noqa: F821
# Merged into traitlets' default logging config: its one handler, "console", gets the filter.
c.IPKernelApp.logging_config = {
    "filters": {"not_the_tcp_warning": {"()": NotTheTCPWarning}},
    "handlers": {"console": {"filters": ["not_the_tcp_warning"]}},
}
