"""`taskflare namespaces ...`: read (and delete from) the document store."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..documents import MAX_LIST_LIMIT, Document, DocumentPage, Namespace
from ..errors import TaskflareError
from .arguments import TextCommand
from .common import DatabaseOpt, JsonOpt, cli, fail, print_json, run, state_app

namespaces_cli = typer.Typer(
    help="Read the document store (imports, crawled pages, embeddings). "
    "Example: taskflare namespaces items products --limit 20",
    no_args_is_help=True,
)
cli.add_typer(namespaces_cli, name="namespaces")

NsArg = Annotated[str, typer.Argument(help="The namespace.")]
KeyArg = Annotated[str, typer.Argument(help="The document's key.")]


@namespaces_cli.command("list", cls=TextCommand)
def namespaces_list(database_url: DatabaseOpt = None, as_json: JsonOpt = False) -> None:
    """Every namespace that holds documents, with its count.

    Example: taskflare namespaces list
    """
    app = state_app(database_url)
    found = run(app, app.namespaces)
    if as_json:
        print_json({"namespaces": [{"namespace": n.namespace, "count": n.count} for n in found]})
        return
    table = Table(title="namespaces")
    table.add_column("namespace")
    table.add_column("documents", justify="right")
    for n in found:
        table.add_row(n.namespace, str(n.count))
    Console().print(table)


@namespaces_cli.command("items", cls=TextCommand)
def namespaces_items(
    namespace: NsArg,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIST_LIMIT)] = 50,
    cursor: Annotated[str | None, typer.Option(help="Continue after this cursor.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Only keys starting with this.")] = None,
    database_url: DatabaseOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A namespace's documents in key order.

    Example: taskflare namespaces items products --prefix sku- --json
    """
    app = state_app(database_url)
    page: DocumentPage = run(
        app, lambda: app.namespace(namespace).list(limit=limit, cursor=cursor, prefix=prefix)
    )
    if as_json:
        items = [d.to_dict() for d in page.items]
        print_json(
            {
                "namespace": namespace,
                "count": len(items),
                "items": items,
                "nextCursor": page.next_cursor,
            }
        )
        return
    table = Table(title=f"namespace {namespace} (key order)")
    for column in ("key", "updated", "value"):
        table.add_column(column, overflow="fold")
    for d in page.items:
        text = json.dumps(d.value, ensure_ascii=False)
        table.add_row(
            d.key, d.to_dict()["updatedAt"], text if len(text) <= 80 else text[:77] + "..."
        )
    Console().print(table)
    if page.next_cursor:
        typer.echo(f"more: --cursor {page.next_cursor}")


async def _get(store: Namespace, key: str) -> Document:
    found = await store.get(key)
    if found is None:
        raise TaskflareError(f"no document {key!r} in namespace {store.name!r}")
    return found


@namespaces_cli.command("get", cls=TextCommand)
def namespaces_get(
    namespace: NsArg, key: KeyArg, database_url: DatabaseOpt = None, as_json: JsonOpt = False
) -> None:
    """One document (its value as JSON).

    Example: taskflare namespaces get products sku-42
    """
    app = state_app(database_url)
    found = run(app, lambda: _get(app.namespace(namespace), key))
    if as_json:
        print_json(found.to_dict())
        return
    typer.echo(json.dumps(found.value, indent=2, ensure_ascii=False))


@namespaces_cli.command("delete", cls=TextCommand)
def namespaces_delete(namespace: NsArg, key: KeyArg, database_url: DatabaseOpt = None) -> None:
    """Delete one document.

    Example: taskflare namespaces delete products sku-42
    """
    app = state_app(database_url)
    if not run(app, lambda: app.namespace(namespace).delete(key)):
        raise fail(f"no document {key!r} in namespace {namespace!r}")
    typer.echo(f"deleted {key!r} from {namespace!r}")
