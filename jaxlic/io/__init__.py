"""Model interchange with other libraries (CompressAI)."""
