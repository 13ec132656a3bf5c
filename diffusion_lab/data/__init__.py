"""The course's data (chapters 01-09): 2-D toys, the photo, MNIST, and the captioned shapes.

- ``toys``: swiss roll, moons, 8 Gaussians, checkerboard (``make_toy``)
- ``mixture``: a Gaussian mixture with an exact density and score at every noise level (``GaussianMixture``)
- ``photo``: the Grace Hopper photo that matplotlib ships (``load_photo``)
- ``mnist``: the bundled, checksummed MNIST subset (``load_mnist``, ``mnist_tensors``), and all of it once
  downloaded (``full_mnist_tensors``)
- ``download``: opt-in download of full MNIST / Fashion-MNIST (``download_dataset``)
- ``shapes``: captioned images of coloured shapes (``make_shapes``)
- ``scenes``: scenes of one or two shapes with relation captions and ground truth (``make_scenes``, chapters 10-11)
"""

from diffusion_lab.data.download import DownloadError, download_dataset, load_idx_dataset
from diffusion_lab.data.integrity import DataIntegrityError
from diffusion_lab.data.mixture import GaussianMixture
from diffusion_lab.data.mnist import full_mnist_tensors, load_mnist, mnist_tensors
from diffusion_lab.data.photo import load_photo
from diffusion_lab.data.scenes import (
    Scene,
    SceneDataset,
    SceneObject,
    make_scenes,
    scene_vocabulary,
    swap_colours,
)
from diffusion_lab.data.shapes import ShapeAttributes, ShapesDataset, make_shapes
from diffusion_lab.data.toys import TOY_NAMES, make_toy

__all__ = [
    "TOY_NAMES",
    "DataIntegrityError",
    "DownloadError",
    "GaussianMixture",
    "Scene",
    "SceneDataset",
    "SceneObject",
    "ShapeAttributes",
    "ShapesDataset",
    "download_dataset",
    "full_mnist_tensors",
    "load_idx_dataset",
    "load_mnist",
    "load_photo",
    "make_scenes",
    "make_shapes",
    "make_toy",
    "mnist_tensors",
    "scene_vocabulary",
    "swap_colours",
]
