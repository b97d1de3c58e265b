"""Release controller: shadow -> canary -> blue/green switch -> bake -> champion, with guardrails.

store (SQLAlchemy tables), observations (what the gateway records), guardrails (window
evaluation, fail closed), machine (the pure state machine), controller (start / tick / promote /
rollback), auth (tokens and roles), api (the actions the CLI and the gateway's admin API call),
k8s (the Argo Rollouts AnalysisTemplate from the same guardrails file).
"""
