"""Every command meets bad input with one line on stderr and a documented exit code.

A corpus of bad input (missing files, directories, binary, empty, oversized and non-UTF-8
files, wrong YAML types at every level of a policy, deep nesting, alias bombs, missing
secret files, bad URLs and durations) is fed to each command ``agentmedic --help`` lists.
Each case must end with its exit code (docs/cli.md: 1 findings, 2 usage or environment),
exactly one stderr line naming the problem, and no traceback. Nothing here reaches a
network: every case fails before a request would be sent.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentmedic.api.yamlfile import MAX_BYTES
from agentmedic.cli.main import COMMANDS, main

ROOT = Path(__file__).resolve().parents[2]

POLICY = """\
apiVersion: agentmedic.io/v1alpha1
kind: AgentPolicy
metadata: {name: p, namespace: agents}
spec:
  selector: {matchLabels: {team: a}}
  rules:
  - name: r
    all: [{metric: error_rate, op: ">", value: 0.5}]
"""

BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def _policy(old: str, new: str) -> str:
    assert old in POLICY
    return POLICY.replace(old, new)


FILES: dict[str, str | bytes] = {
    "valid.yaml": POLICY,
    "empty.yaml": "",
    "binary.yaml": bytes(range(256)) * 8,
    "latin1.yaml": "metadata: {name: caf\xe9}\n".encode("latin-1"),
    "syntax.yaml": "spec: [unclosed\n",
    "huge.yaml": "# padding\n" * (MAX_BYTES // 10 + 1),
    "deep.yaml": "spec: " + "[" * 20_000 + "]" * 20_000 + "\n",
    "laughs.yaml": BILLION_LAUGHS,
    "aliases.yaml": "a: &a x\nb: [" + ", ".join(["*a"] * 150) + "]\n",
    "list.yaml": "- 1\n- 2\n",
    "scalar.yaml": "hello\n",
    "metadata-foo.yaml": _policy("metadata: {name: p, namespace: agents}", "metadata: foo"),
    "metadata-empty.yaml": _policy("metadata: {name: p, namespace: agents}", "metadata:"),
    "spec-number.yaml": POLICY.split("spec:")[0] + "spec: 3\n",
    "rules-mapping.yaml": POLICY.split("  rules:")[0] + "  rules: {a: 1}\n",
    "rule-number.yaml": _policy("  - name: r\n", "  - 1\n  - name: r\n"),
    "conditions-string.yaml": _policy('all: [{metric: error_rate, op: ">", value: 0.5}]', "all: x"),
    "condition-list.yaml": _policy('[{metric: error_rate, op: ">", value: 0.5}]', "[[1]]"),
    "duration.yaml": _policy("  rules:\n", "  interval: 5 minutes\n  rules:\n"),
    "interval-zero.yaml": _policy("  rules:\n", "  interval: 0s\n  rules:\n"),
    "many-rules.yaml": POLICY + "".join(f"  - {{name: r{i}}}\n" for i in range(20_000)),
    "overrides-list.yaml": "- error_rate\n",
    "kubeconfig-list.yaml": "- clusters\n",
    "kubeconfig-garbage.yaml": "clusters: 3\n",
    "token.txt": "s3cr3t-token\n",
    "blank.txt": "\n\n",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for name, content in FILES.items():
        path = root / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    (root / "no-yaml-here").mkdir()
    (root / "no-yaml-here" / "notes.txt").write_text("not a policy")
    return root


@pytest.fixture(autouse=True)
def no_ambient_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No kubeconfig, Prometheus URL or settings from the machine running the tests."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "AGENTMEDIC_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    import os

    for name in list(os.environ):
        if name.startswith("AGENTMEDIC_"):
            monkeypatch.delenv(name)


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    code: int
    says: str

    def __str__(self) -> str:
        return " ".join(self.argv)[:80]


def _cases() -> Iterator[Case]:
    prom = ("--prometheus", "http://127.0.0.1:9")
    bt = ("backtest", "{d}/valid.yaml", *prom, "--from", "now-1h")

    # validate: problems in the files are findings (exit 1), one line each.
    for name, says in [
        ("/nonexistent/policy.yaml", "no such file or directory"),
        ("{d}/no-yaml-here", "no .yaml or .yml files in this directory"),
        ("{d}/binary.yaml", "is a binary file"),
        ("{d}/latin1.yaml", "is not UTF-8 text"),
        ("{d}/empty.yaml", "no agentmedic documents found (AgentPolicy, AgentBudget"),
        ("{d}/syntax.yaml", "YAML syntax error"),
        ("{d}/huge.yaml", "is larger than 1024 KiB"),
        ("{d}/deep.yaml", "nested deeper than 64 levels"),
        ("{d}/laughs.yaml", "YAML aliases expand to"),
        ("{d}/aliases.yaml", "more than 100 YAML aliases"),
        ("{d}/list.yaml", "expected an AgentPolicy object, found list"),
        ("{d}/scalar.yaml", "expected an AgentPolicy object, found str"),
        ("{d}/metadata-foo.yaml", "metadata: must be a mapping (key: value), not str 'foo'"),
        ("{d}/metadata-empty.yaml", "metadata: must be a mapping (key: value), not empty"),
        ("{d}/spec-number.yaml", "spec: must be a mapping (key: value), not int 3"),
        ("{d}/rules-mapping.yaml", "spec.rules: must be a list, not dict"),
        ("{d}/rule-number.yaml", "spec.rules[0]: must be a mapping"),
        ("{d}/conditions-string.yaml", "spec.rules[0].all: must be a list, not str 'x'"),
        ("{d}/condition-list.yaml", "spec.rules[0].all[0]: must be a mapping"),
        ("{d}/duration.yaml", "spec.interval: '5 minutes' is not a duration"),
        ("{d}/interval-zero.yaml", "spec.interval: is 0s; it must be between 10s and 1h"),
        ("{d}/many-rules.yaml", "spec.rules: has 20001 entries; at most 100 are allowed"),
    ]:
        yield Case(("validate", name), 1, says)
    yield Case(("validate",), 2, "the following arguments are required: FILE|DIR")

    # backtest: an unusable policy or argument is a usage error (exit 2).
    for policy, says in [
        ("/nonexistent.yaml", "/nonexistent.yaml: no such file"),
        ("{d}", "is a directory; name a YAML file"),
        ("{d}/binary.yaml", "is a binary file"),
        ("{d}/empty.yaml", "no AgentPolicy in the file (nor an AgentBudget"),
        ("{d}/laughs.yaml", "YAML aliases expand to"),
        ("{d}/deep.yaml", "nested deeper than 64 levels"),
        ("{d}/huge.yaml", "is larger than 1024 KiB"),
        ("{d}/metadata-foo.yaml", "metadata: must be a mapping"),
        ("{d}/interval-zero.yaml", "spec.interval: is 0s"),
    ]:
        yield Case(("backtest", policy, *prom, "--from", "now-1h"), 2, says)
    for extra, says in [
        (("--step", "5 minutes"), "'5 minutes' is not a duration"),
        (("--step", "0s"), "--step must be positive"),
        (("--to", "yesterday"), "yesterday"),
        (("--step", "1ms"), "evaluations (at most 1,000,000)"),
        (("--concurrency", "0"), "--concurrency must be between 1 and 64"),
        (("--concurrency", "many"), "invalid int value: 'many'"),
        (("--plot", "out.pdf"), "use a file name ending in .png or .html"),
        (("--bearer-token-file", "/nonexistent"), "--bearer-token-file /nonexistent: no such file"),
        (("--bearer-token-file", "{d}/binary.yaml"), "a binary file, not text"),
        (("--bearer-token-file", "{d}/blank.txt"), "--bearer-token-file {d}/blank.txt: empty"),
        (("--ca-file", "{d}"), "--ca-file {d}: not a regular file"),
        (("--catalog-overrides-file", "{d}/overrides-list.yaml"), "expected a mapping"),
        (("--catalog-overrides-file", "{d}/laughs.yaml"), "YAML aliases expand to"),
        (("--query-timeout-seconds", "nan"), "--query-timeout-seconds must be above 0"),
    ]:
        yield Case((*bt, *extra), 2, says)
    for url, says in [
        ("ftp://prometheus:9090", "--prometheus: url must start with http:// or https://"),
        ("http://user:pw@prometheus:9090", "--prometheus: url must not contain credentials"),
        ("not a url", "--prometheus:"),
    ]:
        yield Case(("backtest", "{d}/valid.yaml", "--prometheus", url, "--from", "now-1h"), 2, says)
    yield Case(
        ("backtest", "{d}/valid.yaml", "--from", "now-1h"), 2, "--prometheus URL is required"
    )

    # fleet
    for extra, says in [
        (
            ("--basic-auth-password-file", "/nonexistent"),
            "--basic-auth-password-file /nonexistent: no such file",
        ),
        (("--bearer-token-file", "{d}/huge.yaml"), "larger than 1 MiB; is it the right file?"),
        (("--bearer-token-file", "{d}/binary.yaml"), "a binary file, not text"),
        (("--window", "5 minutes"), "'5 minutes' is not a duration"),
        (("--window", "0s"), "--window 0s: must be longer than 0s"),
        (("--at", "someday"), "someday"),
        (("--catalog-overrides-file", "/nonexistent.yaml"), "/nonexistent.yaml: no such file"),
        (("--catalog-overrides-file", "{d}/deep.yaml"), "nested deeper than 64 levels"),
        (("--limit", "-1"), "cannot be negative"),
        (("--agent-label", "bad label"), "is not a valid Prometheus label name"),
    ]:
        yield Case(("fleet", *prom, *extra), 2, says)
    yield Case(("fleet", "--prometheus", "ftp://x"), 2, "--prometheus: url must start with http")
    yield Case(("fleet",), 2, "--prometheus URL is required")
    # -o is every command's (issue 18: `fleet -o json` was refused with the top-level usage).
    yield Case(("fleet", "-o", "pdf"), 2, "agentmedic fleet: argument -o/--output: invalid choice")

    # report cost
    period = ("report", "cost", *prom, "--period", "2026-11")
    for extra, says in [
        (("--by", "cost"), "--by 'cost': use team, namespace, agent or model"),
        (("--tz", "Mars/Olympus"), "--time-zone 'Mars/Olympus' is not a known time zone"),
        (("--lookback", "0s"), "--lookback must be positive"),
        (("--prices", "/nonexistent.yaml"), "--prices /nonexistent.yaml: no such file"),
        (("--prices", "{d}/laughs.yaml"), "YAML aliases expand to"),
        (("--prices", "{d}/list.yaml"), "expected a mapping of model name"),
        (("--team-label", "team-name"), "--team-label 'team-name' is not a valid"),
        (("--bearer-token-file", "{d}/blank.txt"), "--bearer-token-file {d}/blank.txt: empty"),
    ]:
        yield Case((*period, *extra), 2, says)
    yield Case(
        ("report", "cost", *prom, "--period", "2026-13"),
        2,
        "--period '2026-13' is not a period; write 2026-11 (a month), 2026-W45 (an ISO week) "
        "or 2026-11-03 (a day)",
    )
    yield Case(("report", "cost", *prom), 2, "give --period 2026-11")
    yield Case(("report", "cost", "--period", "2026-11"), 2, "--prometheus URL is required")
    yield Case(("report",), 2, "name a report")

    # restore, status and silence: an unusable kubeconfig is an environment problem (exit 2).
    silence_add = ("silence", "add", "agents/bot", "--for", "1h", "--reason", "r")
    for command in (
        ("restore", "agents/bot"),
        ("status",),
        silence_add,
        ("silence", "list"),
        ("silence", "expire", "bot-x1", "-n", "agents"),
    ):
        for kubeconfig, says in [
            ("/nonexistent", "--kubeconfig /nonexistent: no such file"),
            ("{d}/binary.yaml", "is a binary file"),
            ("{d}/laughs.yaml", "YAML aliases expand to"),
            ("{d}/kubeconfig-list.yaml", "not a kubeconfig"),
            ("{d}/kubeconfig-garbage.yaml", ""),
        ]:
            yield Case((*command, "--kubeconfig", kubeconfig), 2, says)
    yield Case(("restore", "bot"), 2, "'bot' is not NAMESPACE/NAME")
    yield Case(("restore", "agents/bot", "-n", "other"), 2, "but -n says 'other'")
    yield Case(("restore", "sts/bot", "--kind", "deployment"), 2, "names a StatefulSet")
    yield Case(("validate", "{d}/valid.yaml", "--fleet-size", "0"), 2, "--fleet-size must be")
    yield Case(("validate", "{d}/valid.yaml", "--scrape-interval", "often"), 2, "'often'")
    yield Case(("status", "-n", "a", "-A"), 2, "not allowed with argument")
    yield Case(("restore", "agents/bot", "--max-replicas", "-1"), 2, "--max-replicas must be")
    yield Case(("restore", "agents/bot", "--kind", "pod"), 2, "invalid choice: 'pod'")
    yield Case(("silence",), 2, "name a subcommand: add, list or expire")
    yield Case((*silence_add[:3], "--for", "8d", "--reason", "r"), 2, "--for must be from 1m to 7d")
    yield Case((*silence_add[:5], "--reason", " "), 2, "--reason is empty")
    yield Case(("silence", "list", "-n", "a", "-A"), 2, "not allowed with argument")

    # optimize-prompt: options (also from the Job's environment) are checked before any
    # request; the API key comes last, from OPENAI_API_KEY only.
    opt = ("optimize-prompt", "-n", "a", "--config-map", "c", "--base-url", "http://127.0.0.1:9")
    opt += ("--model", "m")
    yield Case((*opt, "--key", ""), 2, "missing --key (AGENTMEDIC_PROMPT_KEY)")
    yield Case((*opt, "--key", "bad/key"), 2, "--key 'bad/key' is not a ConfigMap key")
    yield Case((*opt, "--key", "k", "--max-attempts", "0"), 2, "--max-attempts must be")
    yield Case((*opt, "--key", "k", "--min-reduction", "1.5"), 2, "--min-reduction")
    yield Case((*opt, "--key", "k", "--timeout", "soon"), 2, "invalid float value: 'soon'")

    # run: a settings file is read with the same loader.
    for config, says in [
        ("/nonexistent.yaml", "config file /nonexistent.yaml: no such file"),
        ("{d}/binary.yaml", "is a binary file"),
        ("{d}/laughs.yaml", "YAML aliases expand to"),
        ("{d}/list.yaml", "expected a mapping of settings"),
        ("{d}", "is a directory"),
    ]:
        yield Case(("run", "--config", config), 2, says)
    yield Case(("run",), 2, "prometheusUrl is required")
    yield Case(("run", "--extra-headers", "{not json"), 2, "invalid loads value")

    # demo, crd, docs and the command itself: arguments only.
    yield Case(("demo", "--agents", "2"), 2, "--agents must be between 4 and 200")
    yield Case(("demo", "--duration", "10"), 2, "--duration must be between 90 and 3600")
    yield Case(("demo", "--agents", "many"), 2, "invalid int value: 'many'")
    yield Case(("crd", "--output", "x"), 2, "unrecognized arguments")
    yield Case(("docs", "everything"), 2, "invalid choice: 'everything'")
    yield Case(("completion", "powershell"), 2, "invalid choice: 'powershell'")
    yield Case((), 2, "name a command")


CASES = list(_cases())


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own exits
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_ends_in_one_line_and_its_exit_code(case: Case, corpus: Path) -> None:
    argv = [a.replace("{d}", str(corpus)) for a in case.argv]
    code, _, err = _run(argv)

    assert "Traceback" not in err
    assert "unexpected error" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert (
        lines[0].startswith("agentmedic")
        or lines[0].startswith(str(corpus))
        or (lines[0].startswith("/nonexistent"))
    ), lines[0]
    assert case.says.replace("{d}", str(corpus)) in lines[0]
    assert code == case.code, lines[0]


def test_the_corpus_reaches_every_command_the_help_lists() -> None:
    code, out, _ = _run(["--help"])
    assert code == 0
    listed = {c for c in COMMANDS if f"    {c} " in out or f"    {c}\n" in out}
    assert listed == set(COMMANDS)
    assert {c.argv[0] for c in CASES if c.argv} == set(COMMANDS)


def test_a_secret_file_never_appears_in_an_error(corpus: Path) -> None:
    code, out, err = _run(
        ["fleet", "--prometheus", "ftp://x", "--bearer-token-file", str(corpus / "token.txt")]
    )
    assert code == 2
    assert "s3cr3t-token" not in out + err


def test_a_url_with_credentials_is_refused_without_quoting_them() -> None:
    code, _, err = _run(["fleet", "--prometheus", "http://alice:hunter22@prom:9090"])
    assert code == 2
    assert "hunter22" not in err
