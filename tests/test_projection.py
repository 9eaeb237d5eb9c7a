"""The TAN projection both ways, against astropy's WCS."""
import numpy as np
import pytest
from astropy.wcs import WCS

from astrometry_query.projection import tan_deproject, tan_project


@pytest.mark.parametrize('ra0, dec0', [(10.0, 20.0), (359.5, -89.0), (180.0, 0.0),
                                       (0.2, 60.0)])
def test_round_trip_and_astropy(ra0, dec0):
    w = WCS(naxis=2)
    w.wcs.ctype = ['RA---TAN', 'DEC--TAN']
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [ra0, dec0], [1.0, 1.0], [1.0, 1.0]
    rng = np.random.default_rng(1)
    xi, eta = rng.uniform(-20, 20, (2, 50))
    ra, dec = w.wcs_pix2world(xi, eta, 0)
    for i in range(50):
        got = tan_deproject(xi[i], eta[i], ra0, dec0)
        sep = np.hypot((got[0] - ra[i] + 180) % 360 - 180, got[1] - dec[i])
        assert sep < 1e-9 and 0 <= got[0] < 360
    back_xi, back_eta, near = tan_project(ra, dec, ra0, dec0)
    np.testing.assert_allclose(back_xi, xi, atol=1e-9)
    np.testing.assert_allclose(back_eta, eta, atol=1e-9)
    assert near.all()
    # the far hemisphere cannot be projected
    assert not tan_project(ra0 + 180.0, -dec0, ra0, dec0)[2]
    assert tan_deproject(0.0, 0.0, ra0, dec0) == pytest.approx((ra0 % 360, dec0))
