"""Training the replica: OpenAI fine-tuning jobs, local LoRA (SFT, DPO), export to GGUF."""
