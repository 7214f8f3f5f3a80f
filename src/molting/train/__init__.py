"""Training: the preflight (`molt check`), the memory estimate, LoRA SFT and preference training
(`molt train`), checkpoints, the run lock, multi-process launch and the run manifest."""
