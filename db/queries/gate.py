"""Read models of the promotion gate for pages: a channel's rules and its stored gate decisions
(re-exported reads only, as db.queries.lookups does)."""

from db.repo.gate import (
    GateDecisionInfo,
    GateRules,
    gate_decisions_by_id,
    gate_rules,
    get_gate_decision,
    list_gate_decisions,
)

__all__ = [
    "GateDecisionInfo",
    "GateRules",
    "gate_decisions_by_id",
    "gate_rules",
    "get_gate_decision",
    "list_gate_decisions",
]
