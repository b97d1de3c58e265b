"""Responsible recommendations: bot detection, bias audits, privacy and age safety.

Each piece acts where it belongs: bots are flagged before training, audits run before a model
version is registered, and the age and privacy rules hold in serving and in every store.
"""
