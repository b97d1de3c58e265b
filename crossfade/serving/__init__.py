"""The recommendation pipeline the serving processes call, its request models and fallbacks.

No serving framework here: `deployments/recommender/` wraps `RecommendationPipeline` in a
BentoML service; tests and benchmarks call it directly.
"""
