"""Candidate generation: collaborative, content, cold start, popularity sources and ANN retrieval."""
