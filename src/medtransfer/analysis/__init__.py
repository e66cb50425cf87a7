"""Why a model transfers: occlusion saliency, invariance, feature inversion with perceptual distance, embeddings.

One module per analysis, pure like the protocols (a model or features in, a typed result out; no printing, no file
reading or writing): `saliency`, `invariance`, `inversion`, `embedding`. The runner and the CLI write their numbers
to the store and their maps and plots beside it. Import the modules themselves (``from medtransfer.analysis import
saliency``); this package imports only numpy on its own.
"""

from __future__ import annotations

import numpy as np

from medtransfer.errors import ConfigError

ANALYSES = ("saliency", "invariance", "inversion", "embedding")


def sample_index(n: int, n_images: int, seed: int) -> np.ndarray:
    """`n_images` distinct rows of `n` (all when fewer), seeded, sorted: the images an analysis looks at."""
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
        raise ConfigError(f"The 'n_images' of an analysis must be a positive int. Got {n_images!r}.")
    return np.sort(np.random.default_rng(seed).permutation(n)[:n_images])
