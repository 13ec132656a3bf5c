"""diffusion-lab: the package that the course's chapters build, one idea per module.

Chapter 00 tours it; each module's first line names the chapter that teaches it.
"""

__version__ = "0.1.0"
