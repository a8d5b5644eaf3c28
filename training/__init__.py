"""robeserve training: data pipelines, compressed embeddings, DLRM and NObLe models, trainers."""
