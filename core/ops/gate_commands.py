"""`channelhub channel gate SLUG --version-id N` (the promotion gate's comparison, printed) and
`channelhub channel gate-rules SLUG` (see or set the channel's gate). Options are declared
without heavy imports; the handlers import the gate when they run."""

from __future__ import annotations

import argparse
from typing import Any

HERE = "core.ops.gate_commands"


def add_gate_commands(b: Any, verbs: Any) -> None:
    """`channel gate` and `channel gate-rules` under the `channel` command's verbs."""
    q = b.command("gate", f"{HERE}:cmd_gate",
                  "compare a version with production as the promotion gate does "
                  "(exit 1 when the gate would refuse it)", verbs)  # fmt: skip
    q.add_argument("slug")
    q.add_argument("--version-id", type=int, required=True, help="candidate model version id")
    q = b.command("gate-rules", f"{HERE}:cmd_gate_rules",
                  "see or set the channel's promotion gate", verbs)  # fmt: skip
    q.add_argument("slug")
    q.add_argument("--floor", help="least holdout accuracy, 0-1 ('none': no floor)")
    q.add_argument("--max-regression", help="largest accuracy loss against production, 0-1")
    q.add_argument("--min-slice", help="feedback items before the slice can refuse")
    q.add_argument("--reason", default="", help="recorded in the audit log")


def print_evidence(evidence: dict[str, Any]) -> None:
    from core.gate import check_lines, evidence_rows
    from core.ops.commands import table

    prod, cand = evidence.get("production"), evidence["candidate"]
    print(f"candidate {cand['label']} against production {prod['label'] if prod else '(none)'}")
    holdout = evidence.get("holdout", {})
    if holdout.get("note"):
        print(f"holdout: not compared: {holdout['note']}")
    elif holdout.get("fingerprint"):
        print(f"holdout: {holdout['fingerprint'][:12]} (both scored on it)")
    sliced = evidence.get("slice", {})
    print(f"feedback slice: {sliced.get('n', 0)} annotated items neither version trained on"
          + (f" ({sliced['note']})" if sliced.get("note") else ""))  # fmt: skip
    rows = evidence_rows(evidence)
    if rows:
        keys = ["set", "class", "production", "candidate", "change"]
        table(keys, [[r[k] for k in keys] for r in rows])
    for line in check_lines(evidence):
        print(line)


def cmd_gate(args: argparse.Namespace) -> int:
    from core.gate import evaluate_gate
    from db.engine import session_scope

    with session_scope() as s:
        result = evaluate_gate(session=s, slug=args.slug, version_id=args.version_id)
    print_evidence(result.evidence)
    print("gate: passes" if result.passed else "gate: refuses (override with --override-reason)")
    return 0 if result.passed else 1


def _share(option: str, raw: str | None, none_ok: bool = False) -> dict[str, Any]:
    from core.ops.commands import CommandError

    if raw is None:
        return {}
    if none_ok and raw.strip().lower() == "none":
        return {option: None}
    try:
        return {option: int(raw) if option == "min_slice" else float(raw)}
    except ValueError as exc:
        kind = "a whole number" if option == "min_slice" else "a share 0-1"
        raise CommandError(f"--{option.replace('_', '-')} must be {kind}") from exc


def cmd_gate_rules(args: argparse.Namespace) -> int:
    from core.actions.gate import set_gate
    from core.ops.commands import cli_actor
    from db.engine import session_scope
    from db.repo.gate import gate_rules

    values = {
        **_share("min_accuracy", args.floor, none_ok=True),
        **_share("max_regression", args.max_regression),
        **_share("min_slice", args.min_slice),
    }
    if values:
        rules = set_gate(actor=cli_actor(), slug=args.slug, reason=args.reason, **values)
    else:
        with session_scope() as s:
            rules = gate_rules(session=s, slug=args.slug)
    floor = "none" if rules.min_accuracy is None else f"{rules.min_accuracy:g}"
    print(f"{args.slug}: floor {floor}, max regression {rules.max_regression:g}, "
          f"min slice {rules.min_slice} items")  # fmt: skip
    return 0
