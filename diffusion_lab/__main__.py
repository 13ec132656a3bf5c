"""``python -m diffusion_lab ...``: the course's command line (chapter 00 introduces it), in ``cli/main.py``."""

import sys

from diffusion_lab.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
