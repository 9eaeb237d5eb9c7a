"""Internal: small helpers for the words of messages and reprs."""

__all__ = ['plural', 'one_line', 'scale_text']


def plural(count, noun, many=None):
    """``count`` and ``noun``, in the plural unless there is exactly one.

    >>> plural(1, 'source'), plural(3, 'source'), plural(0, 'index file'), plural(2, 'was', 'were')
    ('1 source', '3 sources', '0 index files', '2 were')
    """
    word = noun if count == 1 else (many or f'{noun}s')
    return f'{count} {word}'


def one_line(text, limit=60):
    """Text for a one-line repr: whitespace runs (newlines too) made one blank,
    long text cut.

    >>> one_line('solve failed:\n  no index files'), one_line('x' * 70, 10)
    ('solve failed: no index files', 'xxxxxxx...')
    """
    text = ' '.join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + '...'


def scale_text(arcsec_per_pix):
    """A pixel scale for reading: two decimals, three figures below 1 arcsec/pix.

    >>> scale_text(12.3456), scale_text(0.123456)
    ('12.35', '0.123')
    """
    return f'{arcsec_per_pix:.3g}' if abs(arcsec_per_pix) < 1 else f'{arcsec_per_pix:.2f}'
