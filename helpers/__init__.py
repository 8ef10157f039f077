"""gpt-oss-20b learns to write 2048 strategies with GRPO: the code behind the notebooks.

The game, the prompts, the sandbox, the rewards and the evaluation import only the standard
library, so they load in milliseconds on any CPU; `model`, `training` and `export` import torch.
Imported in a notebook, the package warns when it is not the clone beside the notebook (`checkout`).
"""

from helpers.checkout import in_ipython, warn_if_elsewhere

__version__ = "0.1.0"

if in_ipython():
    warn_if_elsewhere()
