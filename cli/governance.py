"""`geomlops promote|reject|rollback|reconcile|audit|lineage`: human decisions and their trail."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from geomlops.cli.options import JsonOption, ModelArg, ReasonOption

if TYPE_CHECKING:
    from geomlops.governance.decisions import Outcome
    from geomlops.governance.lineage import Link

err = Console(stderr=True, highlight=False, soft_wrap=True)  # one message, one line
out = Console(highlight=False)


def _report(outcome: Outcome, verb: str) -> None:
    for difference in outcome.repaired:
        err.print(f"[yellow]repaired an earlier, unfinished decision:[/] {difference}")
    target = f"{outcome.model} version {outcome.version}"
    out.print(f"{verb} {target} (by {outcome.actor}; audit entry {outcome.entry.id})")  # type: ignore[union-attr]


def promote(
    model: ModelArg,
    version: Annotated[str, typer.Argument(help="Model version number to put into production.")],
    reason: ReasonOption,
) -> None:
    """Promote a candidate to production, as the identity behind GEOMLOPS_API_KEY.

    The approver must hold the approver role and must not have trained or registered the
    version; the version must be a candidate whose evaluation meets the model's gates. The
    training run waiting for this decision is resumed and ends Succeeded.

    Examples:
        GEOMLOPS_API_KEY=$APPROVER_KEY geomlops promote flood-water-s2 3 --reason "IoU 0.80"
    """
    from geomlops.cli.training_runs import settle_after_decision
    from geomlops.governance.decisions import Governance
    from geomlops.settings import get_settings

    settings = get_settings()
    with Governance(settings) as governance:
        _report(governance.promote(model, version, reason), "promoted")
    settle_after_decision(model, version, settings)


def reject(
    model: ModelArg,
    version: Annotated[str, typer.Argument(help="Candidate version to reject.")],
    reason: ReasonOption,
) -> None:
    """Reject a candidate: it can never be promoted.

    The training run waiting for this decision is resumed as rejected and ends at its
    `rejected` step (Succeeded: a decision, not a failure).

    Examples:
        geomlops reject flood-water-s2 4 --reason "misses small channels in the Ebro delta"
    """
    from geomlops.cli.training_runs import settle_after_decision
    from geomlops.governance.decisions import Governance
    from geomlops.settings import get_settings

    settings = get_settings()
    with Governance(settings) as governance:
        _report(governance.reject(model, version, reason), "rejected")
    settle_after_decision(model, version, settings)


def rollback(model: ModelArg, reason: ReasonOption) -> None:
    """Put the previous production version back into production (an approver decision).

    Examples:
        geomlops rollback flood-water-s2 --reason "false water over new solar farms"
    """
    from geomlops.governance.decisions import Governance
    from geomlops.settings import get_settings

    with Governance(get_settings()) as governance:
        _report(governance.rollback(model, reason), "rolled back to")


def reconcile(
    model: Annotated[
        str | None,
        typer.Argument(help="Registered model name; every model when omitted.", show_default=False),
    ] = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Fix what differs (approver only).")
    ] = False,
) -> None:
    """Compare MLflow and the catalog with the audit log and each other; exit 1 if they differ.

    Registrations are compared too: an MLflow registered model without its package item in
    the catalog (a `package register` broken half-way), a package item without its
    registered model, a version item whose MLflow version is missing.

    Examples:
        geomlops reconcile
        geomlops reconcile flood-water-s2
        geomlops reconcile flood-water-s2 --repair
    """
    from geomlops.governance.decisions import Governance
    from geomlops.settings import get_settings

    differed = []
    with Governance(get_settings()) as governance:
        for name in [model] if model else governance.models():
            differences = governance.reconcile(name, repair=repair)
            for difference in differences:
                out.print(("fixed: " if repair else "differs: ") + str(difference), markup=False)
            if not differences:
                out.print(f"{name}: MLflow and the catalog agree with the audit log")
            else:
                differed.append(name)
    if differed and not repair:
        for name in differed:
            err.print(f"[yellow]hint:[/] an approver runs `geomlops reconcile {name} --repair`")
        raise typer.Exit(1)


def audit(
    model: Annotated[str | None, typer.Argument(help="Only this model's entries.")] = None,
    as_json: JsonOption = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Check the whole hash chain and say whether it is intact or where it "
            "breaks; exit 1 if broken.",
        ),
    ] = False,
) -> None:
    """Show the audit trail: registrations, training runs, promotions, rejections, rollbacks.

    Examples:
        geomlops audit
        geomlops audit flood-water-s2 --json
        geomlops audit --verify
    """
    import psycopg

    from geomlops import audit as audit_log
    from geomlops.catalog.db import pgstac_url
    from geomlops.settings import get_settings

    with psycopg.connect(pgstac_url(get_settings())) as conn:
        entries = list(audit_log.entries(conn, model))
        verification = audit_log.check_chain(conn) if verify else None
    if as_json:
        typer.echo(json.dumps([e.as_dict() for e in entries], indent=2))
    else:
        table = Table(title=f"audit trail{' of ' + model if model else ''}")
        for column in (
            "#", "at (UTC)", "actor", "action", "model", "model version", "package", "reason"
        ):  # fmt: skip
            table.add_column(column)
        for e in entries:
            table.add_row(
                str(e.id),
                e.at.strftime("%Y-%m-%d %H:%M:%S") if e.at else "",
                e.actor,
                str(e.action),
                e.model,
                e.model_version or "",
                e.package_version or "",
                e.reason or "",
            )
        out.print(table)
    if verification is None:
        return
    # The verdict goes to stderr, so `--json --verify` still prints only JSON on stdout.
    for problem in verification.problems:
        err.print(f"[red]audit log:[/] {problem}", markup=True)
    if not verification.intact:
        err.print(f"[red]{verification.summary()}[/]")
        raise typer.Exit(1)
    err.print(f"[green]{verification.summary()}[/]")


def _tree(link: Link, tree: Tree | None = None) -> Tree:
    mark = "[red]✗[/]" if not link.ok else "[yellow]![/]" if link.warning else "[green]✓[/]"
    text = f"{mark} [bold]{link.kind}[/] {escape(link.label)}"
    if link.problem:
        text += f"  [red]{escape(link.problem)}[/]"
    if link.warning:
        text += f"  [yellow]{escape(link.warning)}[/]"
    node = Tree(text) if tree is None else tree.add(text)
    for key, value in link.facts.items():
        if value not in (None, {}, []):
            node.add(f"[dim]{key}:[/] {value}")
    for child in link.children:
        _tree(child, node)
    return node


def lineage(
    item_id: Annotated[str, typer.Argument(help="Model version item id, e.g. flood-water-s2-mv1.")],
    as_json: JsonOption = False,
) -> None:
    """Show what a model version came from; exit 1 if any link is broken.

    Every link (package, image, MLflow runs, evaluation gates, DVC dataset, approval) is
    resolved against the live catalog, registry, DVC and audit log. Each gate is shown with
    the value the version reached; an unmet gate and an image not pinned by digest are
    warnings (stderr), not broken links.

    Examples:
        geomlops lineage flood-water-s2-mv1
        geomlops lineage flood-water-s2-mv1 --json | jq '.children[] | select(.ok | not)'
    """
    from geomlops.governance.lineage import LineageResolver
    from geomlops.settings import get_settings

    with LineageResolver(get_settings()) as resolver:
        root = resolver.resolve(item_id)
    if as_json:
        typer.echo(json.dumps(root.as_dict(), indent=2, default=str))
    else:
        out.print(_tree(root))
    for link in root.warnings():
        err.print(
            f"[yellow]warning:[/] {link.kind} {escape(link.label)}: {escape(link.warning or '')}"
        )
    broken = root.broken()
    for link in broken:
        err.print(f"[red]broken link:[/] {link.kind} {link.label}: {link.problem}")
    if broken:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the governance verbs to the top-level command."""
    for verb in (promote, reject, rollback, reconcile, audit, lineage):
        app.command()(verb)
