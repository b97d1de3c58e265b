"""Ranking: the label policy per tier and the LightGBM LambdaRank ranker."""
