"""Routing: the rule files (rules, read by ruleyaml), their conditions (conditions), their
evaluation into a decision with its trace (route), and the agency's rule expectations
(ruletest).
"""
