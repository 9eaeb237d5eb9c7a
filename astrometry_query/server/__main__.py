"""``python -m astrometry_query.server``: the same as ``astrometry-query serve``
(one command line, one way to read the configuration)."""
import sys

__all__ = ['main']


def main(argv=None):
    """Run ``astrometry-query serve`` with these arguments; its exit status."""
    from ..cli import main as cli_main
    return cli_main(['serve', *(sys.argv[1:] if argv is None else argv)])


if __name__ == '__main__':
    sys.exit(main())
