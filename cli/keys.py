"""`geomlops keys create|list|revoke`: API keys of named identities.

Keys are managed in the catalog database directly, and only by an administrator: the key
in ``GEOMLOPS_API_KEY`` (else the local stack's administrator key, made by `geomlops up` in
``$GEOMLOPS_HOME/secrets/admin_api_key.json``, readable by its owner only) must be an active
key with the ``admin`` role. That file is the first administrator key (the bootstrap path)
and the way back in when every other one is lost.
"""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from geomlops.catalog.identity import ROLE_NAMES, Role  # plain data, cheap: --role's help
from geomlops.cli.options import JsonOption

app = typer.Typer(
    name="keys", help="Create, list and revoke catalog API keys.", no_args_is_help=True
)
err = Console(stderr=True)
out = Console()


ROLE_OPTION = typer.Option(
    [Role.WRITER.value], "--role", "-r", help=f"Repeatable: {', '.join(ROLE_NAMES)}."
)


@app.command()
def create(
    name: str = typer.Argument(..., help="Identity the key belongs to, e.g. alice or ci-bot."),
    role: list[str] = ROLE_OPTION,
    as_json: JsonOption = False,
) -> None:
    """Create a key for NAME and print it once (only its hash is stored).

    Examples:
        geomlops keys create alice --role writer --role approver
        export GEOMLOPS_API_KEY=$(geomlops keys create ci-bot --json | jq -r .key)
    """
    unknown = [r for r in role if r not in ROLE_NAMES]
    if unknown:
        raise typer.BadParameter(
            f"unknown role(s) {unknown}; choose from {', '.join(ROLE_NAMES)}", param_hint="--role"
        )
    from geomlops.catalog import keys as key_store
    from geomlops.catalog.client import configured_api_key
    from geomlops.catalog.db import pgstac_connection
    from geomlops.settings import get_settings

    settings = get_settings()
    with pgstac_connection(settings) as conn:
        key_store.ensure_schema(conn)
        key_store.require_admin(conn, configured_api_key(settings))
        key, info = key_store.create_key(conn, name, role)
    if as_json:
        out.print_json(json.dumps({"name": info.name, "roles": list(info.roles), "key": key}))
    else:
        out.print(key, markup=False, highlight=False)
        err.print(f"key for {info.name} ({', '.join(info.roles)}); it is not shown again")


@app.command("list")
def list_(
    all_keys: bool = typer.Option(False, "--all", help="Include revoked keys."),
    as_json: JsonOption = False,
) -> None:
    """List keys: identity, roles, the key's first characters, when created/revoked.

    Examples:
        geomlops keys list
        geomlops keys list --all --json
    """
    from geomlops.catalog import keys as key_store
    from geomlops.catalog.client import configured_api_key
    from geomlops.catalog.db import pgstac_connection
    from geomlops.settings import get_settings

    settings = get_settings()
    with pgstac_connection(settings) as conn:
        key_store.ensure_schema(conn)
        key_store.require_admin(conn, configured_api_key(settings))
        infos = key_store.list_keys(conn, include_revoked=all_keys)
    if as_json:
        out.print_json(
            json.dumps(
                [
                    {
                        "name": i.name,
                        "roles": list(i.roles),
                        "hint": i.hint,
                        "created_at": i.created_at.isoformat(),
                        "revoked_at": i.revoked_at.isoformat() if i.revoked_at else None,
                    }
                    for i in infos
                ]
            )
        )
        return
    table = Table(title="API keys")
    for column in ("name", "roles", "key", "created", "revoked"):
        table.add_column(column)
    for i in infos:
        table.add_row(
            i.name,
            ", ".join(i.roles),
            i.hint,
            f"{i.created_at:%Y-%m-%d %H:%M}",
            f"{i.revoked_at:%Y-%m-%d %H:%M}" if i.revoked_at else "",
        )
    out.print(table)


@app.command()
def revoke(name: str = typer.Argument(..., help="Identity whose active key to revoke.")) -> None:
    """Revoke NAME's key; requests with it are refused from now on.

    Examples:
        geomlops keys revoke alice
    """
    from geomlops.catalog import keys as key_store
    from geomlops.catalog.client import configured_api_key
    from geomlops.catalog.db import pgstac_connection
    from geomlops.settings import get_settings

    settings = get_settings()
    with pgstac_connection(settings) as conn:
        key_store.ensure_schema(conn)
        key_store.require_admin(conn, configured_api_key(settings))
        info = key_store.revoke_key(conn, name)
    err.print(f"revoked the key of {info.name} ({info.hint})")
