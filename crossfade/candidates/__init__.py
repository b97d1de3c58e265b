"""Candidate generation: collaborative, content, cold-start and popularity sources, ANN."""
