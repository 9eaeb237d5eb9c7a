"""Small helpers for the words of messages."""

__all__ = ['plural']


def plural(count, noun, many=None):
    """``count`` and ``noun``, in the plural unless there is exactly one.

    >>> plural(1, 'source'), plural(3, 'source'), plural(0, 'index file'), plural(2, 'was', 'were')
    ('1 source', '3 sources', '0 index files', '2 were')
    """
    word = noun if count == 1 else (many or f'{noun}s')
    return f'{count} {word}'
