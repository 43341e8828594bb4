"""The exceptions deepviz raises; the command line turns them into one line on stderr."""


class DeepvizError(Exception):
    """A runtime failure (unreadable image, weights that don't fit); exit status 1 on the command line."""

    exit_status = 1


class UsageError(DeepvizError, ValueError):
    """An argument asks for something impossible (an unknown layer, a bad option); exit status 2."""

    exit_status = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, timeout, a scheduler), stopping a run of the command line as Ctrl-C does."""
