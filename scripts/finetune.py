"""Fine-tune the experiment's pretrained encoder on its task (skipped when finetune.enabled is false)."""

from bertprune.cli import run
from bertprune.pipeline import run_finetune

if __name__ == "__main__":
    run(__doc__, run_finetune)
