"""The AI loop: event embeddings, similar failures, diagnosis and proposals."""
