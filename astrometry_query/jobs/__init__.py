"""Jobs: one solve, one directory, one way to run it.

* `SolveRequest` (``request.py``): what a solve is asked, under one set of names;
* ``files.py``: what a job directory holds, `RESULT_KINDS` (the one table of
  result kinds that the protocol, the server, its web pages and downloads
  read) and `JobStore` (job directories and their ids);
* ``runner.py``: `JobRunner` (a request in a job directory on any Executor, a
  Future of its outcome), `error_for` (a failed outcome as an error);
* ``outputs.py``: what a solved job offers on request (objects in the field,
  annotations, files made lazily).

The engine's modules name their files from ``files.py``, so importing this
package loads the runner (and with it the engine) only when it is asked for.
"""
from .files import (DOWNLOAD_KINDS, KIND_OF_ROUTE, RESULT_KINDS, JobStore, ResultKind,
                    read_result)
from .request import SolveRequest

__all__ = ['SolveRequest', 'JobRunner', 'JobStore', 'ResultKind', 'RESULT_KINDS',
           'KIND_OF_ROUTE', 'DOWNLOAD_KINDS', 'error_for', 'make_executor', 'run_job',
           'read_result']

_FROM_RUNNER = ('JobRunner', 'error_for', 'make_executor', 'run_job')


def __getattr__(name):
    if name in _FROM_RUNNER:
        from . import runner
        return getattr(runner, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
