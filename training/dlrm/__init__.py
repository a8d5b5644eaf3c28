"""DLRM: compressed embeddings (full, hashing trick, ROBE-Z, LMA), the model, its trainer and results."""
