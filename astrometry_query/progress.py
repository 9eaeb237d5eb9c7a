"""Showing that work goes on: a status line while one solve is waited for, a
bar for a batch.  On a terminal or in a Jupyter kernel they are live (a
widget in a notebook when ipywidgets is installed); elsewhere (a CI log) a
status line becomes one log line per change.  ``verbose=False`` silences both.
"""
import sys

from astroquery import log

__all__ = ['StatusLine', 'BatchProgress', 'in_notebook']


def in_notebook():
    """True when this code runs in a Jupyter kernel (notebook, lab, VS Code...).

    There stderr is not a TTY, yet a live line is shown: tqdm.auto draws a
    widget when ipywidgets is installed, else a text line the front end
    redraws.  (The class tqdm.auto exports is defined in ``tqdm.auto`` or
    ``tqdm.asyncio``, never in ``tqdm.notebook``, so its module name cannot
    tell.)  A terminal IPython is not a kernel.
    """
    if 'ipykernel' not in sys.modules or 'IPython' not in sys.modules:
        return False
    try:
        shell = sys.modules['IPython'].get_ipython()
    except Exception:       # an IPython too old or half imported
        return False
    # The kernel's shell (ZMQInteractiveShell) holds its kernel; a terminal shell has none.
    return getattr(shell, 'kernel', None) is not None


def _is_tty(stream):
    try:
        return bool(stream is not None and stream.isatty())
    except Exception:       # a replaced stream without isatty, or a closed one
        return False


class StatusLine:
    """A one-line status display: a tqdm line on a terminal or in a Jupyter
    kernel (a widget when ipywidgets is installed), else one log line per
    change (so CI logs stay readable); nothing with ``verbose=False``."""

    def __init__(self, verbose=True, desc='Solving'):
        self._bar = None
        self._verbose = verbose
        self._last = None
        if verbose and (_is_tty(sys.stderr) or in_notebook()):
            from tqdm.auto import tqdm
            self._bar = tqdm(total=None, desc=desc, bar_format='{desc} [{elapsed}]',
                             leave=False)

    def update(self, text):
        if self._bar is not None:
            self._bar.set_description_str(text, refresh=False)
            self._bar.update(0)
            self._bar.refresh()
        elif self._verbose and text != self._last:
            log.info(text)
        self._last = text

    def close(self):
        if self._bar is not None:
            self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class BatchProgress:
    """One tqdm bar for a batch (a notebook widget in Jupyter), counting
    solved and failed; silent with ``verbose=False``."""

    def __init__(self, total, verbose):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=total, desc='Solving', unit='image', disable=not verbose,
                        leave=True)
        self.solved = self.failed = 0

    def done(self, row):
        if row['status'] == 'success':
            self.solved += 1
        else:
            self.failed += 1
        self.bar.set_postfix(solved=self.solved, failed=self.failed, refresh=False)
        self.bar.update(1)

    def close(self):
        self.bar.close()
