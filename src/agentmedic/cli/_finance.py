"""What ``report cost`` and ``fleet`` share for finance: the price list and the teams.

Prices, in this order: ``--price-list FILE`` (a ModelPriceList document, as finance applies
it to the cluster), ``--prices FILE`` (the SDK's mapping of model to prices, merged over its
table), the cluster's ModelPriceList ``--price-list-name`` (default ``default``) when
``--kubeconfig`` or ``--context`` is given, else the SDK's built-in table. A cluster without
the list named ``default`` prices by the built-in table, as the operator does; a list named
explicitly must exist.

Teams: a series' own team label; with ``--kubeconfig`` or ``--context``, a series without
one takes the team label of its Namespace.
"""

from __future__ import annotations

import argparse
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentmedic.cli._errors import EXIT_FINDINGS, CliError

if TYPE_CHECKING:
    from agentmedic.kube import Kube
    from agentmedic.metrics.pricing import PriceBook

__all__ = [
    "add_price_arguments",
    "cluster_given",
    "namespace_teams",
    "price_book",
    "price_list_from_file",
]

DEFAULT_LIST = "default"


def add_price_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--price-list FILE``, ``--price-list-name NAME`` and ``--prices FILE``."""
    parser.add_argument(
        "--price-list",
        type=Path,
        metavar="FILE",
        help="a ModelPriceList YAML file (as applied to the cluster) to price tokens with",
    )
    parser.add_argument(
        "--price-list-name",
        metavar="NAME",
        help="with --kubeconfig/--context: the cluster's ModelPriceList to use "
        f"(default: {DEFAULT_LIST}; the SDK's table when it does not exist)",
    )
    parser.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="YAML or JSON mapping of model to {input, output, cached_input} (USD per 1M "
        "tokens) merged over the SDK's table",
    )


def cluster_given(args: argparse.Namespace) -> bool:
    """Whether the command was pointed at a cluster (``--kubeconfig`` or ``--context``)."""
    return bool(getattr(args, "kubeconfig", None) or getattr(args, "context", None))


def price_list_from_file(path: Path) -> PriceBook:
    """A ModelPriceList YAML file's prices; :class:`CliError` naming the field otherwise."""
    from pydantic import ValidationError

    from agentmedic.api.budget import PRICE_LIST_KIND, ModelPriceList
    from agentmedic.api.yamlfile import YAMLInputError, load_documents
    from agentmedic.metrics.pricing import PriceBook

    try:
        documents = [d for d in load_documents(path) if d is not None]
    except YAMLInputError as exc:
        raise CliError(f"--price-list {exc}") from None
    except OSError as exc:
        raise CliError(f"--price-list {path}: {exc.strerror or type(exc).__name__}") from None
    lists = [d for d in documents if isinstance(d, dict) and d.get("kind") == PRICE_LIST_KIND]
    if len(lists) != 1:
        raise CliError(
            f"--price-list {path}: expected one {PRICE_LIST_KIND} document "
            f"(kind: {PRICE_LIST_KIND}, spec.prices), found {len(lists)}"
        )
    try:
        document = ModelPriceList.model_validate(lists[0])
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CliError(f"--price-list {path}: {where}: {first['msg']}") from None
    return PriceBook.from_spec(document.spec)


def _prices_file(path: Path) -> PriceBook:
    from agentmedic.api.yamlfile import YAMLInputError, load_file
    from agentmedic.instrument.prices import PriceTable
    from agentmedic.metrics.pricing import PriceBook

    # The bounded loader, not PriceTable.from_file's plain yaml.safe_load: this file comes
    # from a person. JSON is YAML, so one loader reads both.
    try:
        data = load_file(path)
    except YAMLInputError as exc:
        raise CliError(f"--prices {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("prices"), dict):
        data = data["prices"]  # the same optional wrapper PriceTable.from_file accepts
    if not isinstance(data, dict):
        raise CliError(
            f"--prices {path}: expected a mapping of model name to "
            "{input, output, cached_input} in USD per 1M tokens"
        )
    try:
        table = PriceTable().with_overrides(data)
    except ValueError as exc:
        raise CliError(f"--prices {path}: {exc}") from None
    return PriceBook(table.prices)


def price_book(args: argparse.Namespace) -> tuple[PriceBook, str]:
    """The prices to use and where they came from, in words (see the module's order)."""
    from agentmedic.metrics.pricing import PRICES_AS_OF, PriceBook

    sdk = f"the SDK's table (as of {PRICES_AS_OF})"
    if args.price_list is not None and args.prices is not None:
        raise CliError("give --price-list or --prices, not both")
    if args.price_list is not None:
        return price_list_from_file(args.price_list), f"{args.price_list} (ModelPriceList)"
    if args.prices is not None:
        return _prices_file(args.prices), f"{args.prices}, over {sdk}"
    if args.price_list_name is not None and not cluster_given(args):
        raise CliError(
            "--price-list-name reads the cluster: give --kubeconfig or --context too, "
            "or --price-list FILE"
        )
    if not cluster_given(args):
        return PriceBook.default(), sdk
    name = args.price_list_name or DEFAULT_LIST
    document = _with_cluster(args, lambda kube: _read_price_list(kube, name))
    if document is None:
        if args.price_list_name is not None:
            raise CliError(
                f"--price-list-name {name}: no ModelPriceList {name!r} in the cluster; "
                "list them with kubectl get modelpricelists"
            )
        return PriceBook.default(), f"{sdk} (the cluster has no ModelPriceList {name!r})"
    return document, f"ModelPriceList {name!r} of the cluster"


def namespace_teams(args: argparse.Namespace, team_label: str) -> dict[str, str]:
    """Namespace → the value of its ``team_label`` label, for the namespaces that have it;
    empty without ``--kubeconfig``/``--context``."""
    if not cluster_given(args):
        return {}

    def read(kube: Kube) -> dict[str, str]:
        body = kube.request("list Namespaces", "GET", "/api/v1/namespaces")
        out: dict[str, str] = {}
        for item in body.get("items") or []:
            meta = item.get("metadata") or {}
            value = (meta.get("labels") or {}).get(team_label)
            if meta.get("name") and value:
                out[str(meta["name"])] = str(value)
        return out

    teams: dict[str, str] = _with_cluster(args, read)
    return teams


def _read_price_list(kube: Kube, name: str) -> PriceBook | None:
    from pydantic import ValidationError

    from agentmedic.api.budget import PRICE_LIST_PLURAL, ModelPriceList
    from agentmedic.api.types import GROUP, VERSION
    from agentmedic.kube import NotFound
    from agentmedic.metrics.pricing import PriceBook

    path = f"/apis/{GROUP}/{VERSION}/{PRICE_LIST_PLURAL}/{urllib.parse.quote(name, safe='')}"
    try:
        body = kube.request(f"get {PRICE_LIST_PLURAL}.{GROUP} {name}", "GET", path)
    except NotFound:
        return None
    try:
        document = ModelPriceList.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CliError(f"ModelPriceList {name!r} in the cluster: {where}: {first['msg']}") from None
    return PriceBook.from_spec(document.spec)


def _with_cluster(args: argparse.Namespace, read: Any) -> Any:
    """Run ``read(kube)``; a cluster that cannot be reached or refuses is exit 1, missing
    credentials exit 2 (:class:`CliError`)."""
    from agentmedic.cli._kubeconfig import ConfigurationError, client_configuration
    from agentmedic.kube import Kube, KubeError

    try:
        conf = client_configuration(args.kubeconfig, args.context)
    except ConfigurationError as exc:
        raise CliError(f"no Kubernetes credentials: {exc}") from None
    kube = Kube.from_configuration(conf)
    try:
        return read(kube)
    except KubeError as exc:
        if exc.status:
            raise CliError(
                f"the API server answered {exc.status} {exc.reason} ({exc})", EXIT_FINDINGS
            ) from None
        # The host only: the client's text quotes URLs, and a proxy URL may carry a password.
        host = urllib.parse.urlsplit(str(conf.host)).hostname or "the configured server"
        where = f"cannot reach the cluster at {host} ({exc.reason})"
        raise CliError(where, EXIT_FINDINGS) from None
    finally:
        kube.close()
