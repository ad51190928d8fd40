"""Routing: the rule files (rules), their evaluation into a decision with its trace (route),
and the agency's rule expectations (ruletest).
"""
