"""Why a model transfers: occlusion saliency, invariance, feature inversion with perceptual distance, embeddings.

One module per analysis, pure like the protocols (a model or features in, a typed result out; no printing, no file
reading or writing): `saliency`, `invariance`, `inversion`, `embedding`. The runner and the CLI write their numbers
to the store and their maps and plots beside it. Import the modules themselves (``from medtransfer.analysis import
saliency``); this package imports nothing heavy on its own.
"""

ANALYSES = ("saliency", "invariance", "inversion", "embedding")
