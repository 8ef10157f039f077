"""gpt-oss-20b learns to write 2048 strategies with GRPO: the code behind the notebooks.

The game, the prompts, the sandbox, the rewards and the evaluation import only the standard
library, so they load in milliseconds on any CPU; `model`, `training` and `export` import torch.
"""

__version__ = "0.1.0"
