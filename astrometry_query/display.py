"""Internal: how an image is shown, its display range and stretch, for the plots and the
annotated PNG (public as `astrometry_query.plotting.display_norm` and ``display_interval``).

`display_norm` is what `astrometry_query.plotting` draws images with, and
`display_levels` what the local backend's annotated PNG and extraction
image are drawn with, so that they all look alike.  astropy.visualization
(which needs matplotlib) is imported inside the functions: importing the
package must not import matplotlib.
"""
import math

import astropy.units as u
import numpy as np

from .exceptions import InvalidInputError

__all__ = ['display_interval', 'display_norm', 'display_levels']

# The sky is shown from SKY_LOW noise sigmas under its level; the asinh stretch is linear up
# to SOFTENING sigmas above it (the noise stays dark and even) and logarithmic beyond (faint
# and bright stars both show).  A range of at least MIN_RANGE sigmas keeps a field with
# only faint stars from amplifying its noise into grey.
_SKY_LOW, _SOFTENING, _MIN_RANGE = 2.0, 2.0, 50.0
# Pixels this many sigmas over the sky are the stars'; the top end of the display is the
# _STAR_PERCENTILE of their levels: the peaks of the bright stars.
_STAR_SIGMAS, _STAR_PERCENTILE = 5.0, 99.5


def _sky_levels(data):
    """(sky, noise, star peak level) of an image, or None when it has no finite pixel.

    The sky and its noise are the sigma-clipped median and MAD standard
    deviation (astropy.stats); computed on at most a million pixels.
    """
    from astropy.stats import sigma_clipped_stats
    flat = np.ravel(data)
    sample = flat[::max(1, flat.size // 1_000_000)]
    sample = sample[np.isfinite(sample)].astype(np.float64)
    if not sample.size:
        return None
    _, sky, noise = sigma_clipped_stats(sample, sigma=3.0, maxiters=10, stdfunc='mad_std')
    sky, noise = float(sky), float(noise)
    if not (math.isfinite(noise) and noise > 0):
        # quantised or clipped data (e.g. a black sky at 0): a thousandth of the range
        noise = float(np.ptp(sample)) / 1000.0
    stars = sample[sample > sky + _STAR_SIGMAS * noise]
    peak = float(np.percentile(stars, _STAR_PERCENTILE)) if stars.size else sky
    return sky, noise, peak


def display_interval(data):
    """The default display range of an image, from its sky and its stars.

    From 2 noise sigmas under the sky level (the sigma-clipped median) to the
    peak level of the bright stars (the 99.5th percentile of the pixels over
    5 sigmas), and at least 50 sigmas wide: a nearly empty field keeps a
    dark sky instead of stretching its noise to grey.  Computed on at most
    a million pixels.

    Parameters
    ----------
    data : `~numpy.ndarray`

    Returns
    -------
    `~astropy.visualization.ManualInterval`
    """
    return _interval(_sky_levels(data))


def _interval(levels):
    from astropy.visualization import ManualInterval
    if levels is None:
        return ManualInterval(0.0, 1.0)
    sky, noise, peak = levels
    if noise == 0:              # a flat image: any span will do
        return ManualInterval(sky, sky + 1.0)
    return ManualInterval(sky - _SKY_LOW * noise, max(peak, sky + _MIN_RANGE * noise))


def display_norm(data, interval=None, stretch=None):
    """How an image is shown: an `~astropy.visualization.ImageNormalize`.

    The default is the plots' and the annotated PNG's: `display_interval`,
    under an `~astropy.visualization.AsinhStretch` whose linear part spans
    the sky noise (2 sigmas): the sky is dark and even, and stars from the
    faintest to the brightest show, on a logarithmic scale.

    Parameters
    ----------
    data : `~numpy.ndarray`
    interval : `~astropy.visualization.BaseInterval` or (vmin, vmax), optional
        Default `display_interval`.
    stretch : `~astropy.visualization.BaseStretch`, optional
        Default the asinh stretch above (with any ``interval``).

    Returns
    -------
    `~astropy.visualization.ImageNormalize`
        Clipping: values outside the interval are shown as its ends.

    Raises
    ------
    InvalidInputError
        ``interval`` or ``stretch`` of the wrong kind.
    """
    from astropy.visualization import (AsinhStretch, BaseInterval, BaseStretch, ImageNormalize,
                                       ManualInterval)
    if isinstance(interval, (tuple, list)) and len(interval) == 2:
        interval = ManualInterval(*(u.Quantity(v).value for v in interval))
    if interval is not None and not isinstance(interval, BaseInterval):
        raise InvalidInputError('interval must be an astropy.visualization interval (e.g. '
                                f'ZScaleInterval()) or (vmin, vmax), got {interval!r}.')
    if stretch is not None and not isinstance(stretch, BaseStretch):
        raise InvalidInputError('stretch must be an astropy.visualization stretch (e.g. '
                                f'AsinhStretch()), got {stretch!r}.')
    data = np.asarray(data)
    finite = data[np.isfinite(data)]
    levels = _sky_levels(finite) if interval is None or stretch is None else None
    if interval is None:
        interval = _interval(levels)
    vmin, vmax = interval.get_limits(finite) if finite.size else (0.0, 1.0)
    if not vmax > vmin:
        vmax = vmin + 1.0
    if stretch is None:
        noise = levels[1] if levels else 0.0
        stretch = AsinhStretch(min(1.0, max(_SOFTENING * noise / (vmax - vmin), 1e-6)))
    return ImageNormalize(vmin=vmin, vmax=vmax, stretch=stretch, clip=True)


def display_levels(data):
    """8-bit grey levels of an image for display: NaN-safe (NaN is black), the sky dark.

    The normalization is `display_norm`'s, as in the package's plots: from
    just under the sky to the bright stars' peaks, under an asinh stretch
    fitted to the sky noise.

    Parameters
    ----------
    data : `~numpy.ndarray`

    Returns
    -------
    `~numpy.ndarray` of uint8
    """
    data = np.asarray(data, dtype=np.float32)
    good = np.isfinite(data)
    if not good.any():
        return np.zeros(data.shape, np.uint8)
    levels = np.ma.filled(display_norm(data)(data), 0.0)
    levels[~good] = 0.0
    return np.round(levels * 255.0).astype(np.uint8)
