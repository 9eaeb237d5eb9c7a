"""Internal: the nova backend: the wire format (``protocol``), the HTTP client
(``client``), waiting for a job (``polling``), uploads and batches.
"""

__all__ = []
