"""diffusion-lab: the package that the course's chapters build, one idea per module.

Chapter 00 tours it; each module's first line names the chapter that teaches it.
"""

from diffusion_lab.cli.torch_support import check_installed_torch as _check_installed_torch

__version__ = "0.1.0"

# An unsupported PyTorch stops here with one clear line (the range and why: cli/torch_support.py).
_check_installed_torch()
