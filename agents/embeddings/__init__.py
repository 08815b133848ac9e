"""Event embeddings: events -> documents (documents) -> vectors (embedder) -> the vector index (index),
kept up to date by the indexer, searched by the similar-failure finder (similar).

Import the modules themselves: this package imports nothing heavy (sentence_transformers loads only
when a MiniLMEmbedder first embeds)."""
