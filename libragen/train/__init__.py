"""Trainers (issues #4, #8, #9): rectified-flow pre-training, LoRA SFT, Flow-DPO, LoRA merging. Not built yet."""
