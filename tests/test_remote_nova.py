"""Against the real nova.astrometry.net: run only with ``--remote-data=any``
(``tox -e test-remote``) and an API key in ``ASTROMETRY_NET_API_KEY``.

Everything else in the suite stays on 127.0.0.1 (pytest-remotedata blocks
the internet for unmarked tests).  These check that what the loopback server
stands in for is what nova really does: the same bundled example, solved
there from its source list, lands within a small fraction of a pixel of the
local solution.
"""
import os

import numpy as np
import pytest
from astropy.wcs import WCS

from astrometry_query import AstrometryNetClass
from astrometry_query.cli import example_image_path

pytestmark = [
    pytest.mark.remote_data,
    pytest.mark.skipif(not os.environ.get('ASTROMETRY_NET_API_KEY'),
                       reason='needs ASTROMETRY_NET_API_KEY for nova.astrometry.net'),
]


def _corners(header, shape):
    ny, nx = shape
    x = np.array([1, nx, 1, nx, nx / 2])
    y = np.array([1, 1, ny, ny, ny / 2])
    return WCS(header).all_pix2world(x, y, 1)


def test_nova_solves_the_example_as_the_local_backend_does():
    path = example_image_path()
    with AstrometryNetClass(backend='local') as local:
        ours = local.solve_from_image(path, verbose=False, cache=False)
    with AstrometryNetClass(backend='nova') as nova:      # key from the environment
        theirs = nova.solve_from_image(path, verbose=False, cache=False, solve_timeout=600)
        calibration = nova.get_calibration(theirs)
    shape = (int(ours['IMAGEH']), int(ours['IMAGEW']))
    ra1, dec1 = _corners(ours, shape)
    ra2, dec2 = _corners(theirs, shape)
    scale = calibration.pixscale.to_value('arcsec/pix') / 3600.0
    offset = np.hypot((ra1 - ra2) * np.cos(np.radians(dec1)), dec1 - dec2) / scale
    assert offset.max() < 1.0, f'corners differ by {offset.max():.2f} px'
