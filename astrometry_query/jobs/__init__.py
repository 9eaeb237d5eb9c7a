"""Jobs: one solve, one directory, one way to run it.

* `SolveRequest` (``request.py``): what a solve is asked, under one set of names;
* ``files.py``: what a job directory holds, `RESULT_KINDS` (the one table of
  result kinds that the protocol, the server, its web pages and downloads
  read) and `JobStore` (job directories and their ids);
* ``runner.py``: `JobRunner` (a request in a job directory on any Executor, a
  Future of its outcome), `error_for` (a failed outcome as an error);
* ``outputs.py``: what a solved job offers on request (objects in the field,
  annotations, files made lazily).
"""
from .files import (DOWNLOAD_KINDS, KIND_OF_ROUTE, RESULT_KINDS, JobStore, ResultKind,
                    read_result)
from .request import SolveRequest
from .runner import JobRunner, error_for, make_executor, run_job

__all__ = ['SolveRequest', 'JobRunner', 'JobStore', 'ResultKind', 'RESULT_KINDS',
           'KIND_OF_ROUTE', 'DOWNLOAD_KINDS', 'error_for', 'make_executor', 'run_job',
           'read_result']
