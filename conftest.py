"""pytest set-up shared by the unit tests and the notebook tests (nbval runs chapters/*.ipynb).

Every chapter runs in quick mode under the tests: the kernels nbval starts inherit this variable.
"""

import os

os.environ["DIFFUSION_LAB_QUICK"] = "1"
