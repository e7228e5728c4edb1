#!/usr/bin/env python3
"""Checks the ready-made CI files in ci/ against the tools they call.

    ci/validate-workflows.py [SERVEGATE] [--ci-dir DIR]
    ci/validate-workflows.py --self-test [SERVEGATE]

SERVEGATE is a built servegate binary (default: target/debug/servegate).
Every ci/*.yml and ci/*.yaml file is read (PyYAML) and checked:

- A GitHub Actions workflow has `on` and `jobs`; every job has `runs-on` and
  `steps` (or `uses`, a reusable workflow), every step `run` or `uses`;
  `needs` names jobs of the same file, `${{ matrix.X }}` a key of the job's
  matrix, `${{ inputs.X }}` an input of the workflow.
- A Kubernetes file holds Jobs with `completionMode: Indexed`, `completions`
  and `parallelism`, whose containers use JOB_COMPLETION_INDEX; a partition
  written `hash:K/N` with a literal N must have N = completions.
- Every shell command, in `run:` steps and in container `command`/`args`, is
  split into simple commands (pipes, `&&`, `;`, `$(...)` and backticks; not
  heredoc bodies or comments). Each servegate invocation (`servegate SUB`,
  a path or `$SERVEGATE` ending in servegate, `cargo run ... -- SUB`) must
  name a subcommand the binary lists in `--help` and use only the flags its
  `SUB --help` lists. Each `cargo nextest SUB` (or `cargo-nextest nextest
  SUB`) must use only the flags of `cargo nextest SUB --help`.

A subcommand the workflows use before the binary has it is described in
PENDING below; its entry is used only while `servegate --help` does not list
the subcommand, so it drops out by itself once the binary has it.

Exits 1 naming the file, job and step (or Job and container) and the bad
subcommand or flag; 2 when the tools cannot be asked. `--self-test` runs the
checker on a deliberately broken set of files in a temporary folder and
fails unless it catches every fault (and accepts a correct file).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("validate-workflows: PyYAML is needed: python3 -m pip install --quiet pyyaml")

# Subcommands the workflows call that the binary may not have yet: their
# interface, flag -> takes a value. Used only while `servegate --help` does
# not list the subcommand. Options every subcommand accepts (`--root`,
# `--help`) are added from the binary's own subcommands.
PENDING: dict[str, dict[str, bool]] = {
    # e.g. "merge": {"--output": True, "--junit": True} while `merge` was on its way
}

NEXTEST_SUBCOMMANDS = ("run", "archive", "list")

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# clap option lines: indented 2 (with a short form) or 6 (long only).
LONG_OPT = re.compile(
    r"^ {2,6}(?:(-[A-Za-z0-9]),\s+)?(--[A-Za-z0-9][A-Za-z0-9-]*)(\[=<[^>]*>\])?((?:[ =])<[^>]*>)?"
)
SHORT_OPT = re.compile(r"^ {2,6}(-[A-Za-z0-9])(\s<[^>]*>)?(?:\s|,|$)")
GH_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)
HEREDOC = re.compile(r"(?<!<)<<(?!<)(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PARTITION = re.compile(r"^(?:hash|count|slice):[^/]*/(\d+)$")

KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until",
            "!", "{", "}", "time", "exec", "nohup", "builtin"}


class ToolError(Exception):
    """A tool could not be asked for its help."""


# ---------------------------------------------------------------------------
# The tools' flags

def run_help(argv: list[str]) -> str | None:
    env = dict(os.environ, NO_COLOR="1", CARGO_TERM_COLOR="never", TERM="dumb")
    # SERVEGATE_* variables of the caller are configuration; help needs none.
    for name in list(env):
        if name.startswith("SERVEGATE_"):
            del env[name]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolError(f"cannot run `{' '.join(argv)}`: {e}") from e
    if out.returncode != 0:
        return None
    return ANSI.sub("", out.stdout)


def parse_options(help_text: str) -> dict[str, object]:
    """Flag -> True (takes a value), False (takes none) or "optional" (`--x[=V]`)."""
    opts: dict[str, object] = {}
    for line in help_text.splitlines():
        m = LONG_OPT.match(line)
        if m:
            short, long, optional, value = m.groups()
            takes = "optional" if optional else bool(value)
            opts[long] = takes
            if short:
                opts[short] = takes
            continue
        m = SHORT_OPT.match(line)
        if m:
            opts[m.group(1)] = bool(m.group(2))
    return opts


def parse_commands(help_text: str) -> list[str]:
    out, inside = [], False
    for line in help_text.splitlines():
        if line.strip() == "Commands:":
            inside = True
            continue
        if inside:
            m = re.match(r"^ {2}([a-z][a-z0-9-]*)\b", line)
            if m:
                out.append(m.group(1))
            elif line.strip() == "" or not line.startswith(" "):
                inside = False
    return out


class Tools:
    """What servegate and cargo-nextest accept, asked once each."""

    def __init__(self, servegate: str):
        self.servegate = servegate
        top = run_help([servegate, "--help"])
        if top is None:
            raise ToolError(f"`{servegate} --help` failed")
        self.commands = parse_commands(top)
        if not self.commands:
            raise ToolError(f"`{servegate} --help` lists no subcommands")
        self.global_opts = parse_options(top)
        self._sub: dict[str, dict[str, object] | None] = {}
        self._nextest: dict[str, dict[str, object] | None] = {}
        self.pending: dict[str, dict[str, object]] = {}
        self.checked: list[str] = []  # every invocation checked, for --verbose
        # Options every subcommand of the binary accepts (global ones).
        common = None
        for sub in self.commands:
            if sub == "help":
                continue
            opts = self.subcommand(sub) or {}
            common = set(opts) if common is None else common & set(opts)
        common_opts = {k: self.global_opts.get(k, False) for k in (common or ())}
        for sub, flags in PENDING.items():
            if sub in self.commands:
                continue  # the binary has it now: its own help decides
            self.pending[sub] = dict(common_opts, **flags)

    def subcommand(self, sub: str) -> dict[str, object] | None:
        """Options of `servegate SUB`, or None when there is no such subcommand."""
        if sub in self.pending:
            return self.pending[sub]
        if sub not in self.commands:
            return None
        if sub not in self._sub:
            text = run_help([self.servegate, sub, "--help"])
            self._sub[sub] = parse_options(text) if text is not None else None
        return self._sub[sub]

    def nextest(self, sub: str) -> dict[str, object] | None:
        if sub not in self._nextest:
            if sub not in NEXTEST_SUBCOMMANDS:
                self._nextest[sub] = None
            else:
                text = run_help(["cargo", "nextest", sub, "--help"])
                if text is None:
                    raise ToolError(f"`cargo nextest {sub} --help` failed: is cargo-nextest installed?")
                self._nextest[sub] = parse_options(text)
        return self._nextest[sub]


# ---------------------------------------------------------------------------
# Shell text -> simple commands

def strip_heredocs(script: str) -> str:
    out, ends = [], []
    for line in script.splitlines():
        if ends:
            if line.strip() == ends[0]:
                ends.pop(0)
            continue
        out.append(line)
        ends.extend(m.group(3) for m in HEREDOC.finditer(line))
    return "\n".join(out)


def matching(text: str, i: int, open_: str, close: str) -> int:
    """Index just past the `close` that balances the `open_` before i."""
    depth, quote = 1, None
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "\\":
            i += 2
            continue
        elif text.startswith(open_, i):
            depth += 1
            i += len(open_)
            continue
        elif text.startswith(close, i):
            depth -= 1
            i += len(close)
            if depth == 0:
                return i
            continue
        i += 1
    return len(text)


def split_script(script: str) -> list[list[str]]:
    """The simple commands of a shell script, each as its words; command
    substitutions become commands of their own."""
    script = GH_EXPR.sub("GHA_EXPR", script)
    script = strip_heredocs(script).replace("\\\n", " ")
    found: list[list[str]] = []
    segments: list[str] = []
    cur: list[str] = []
    i, quote = 0, None
    word_start = True

    def flush():
        text = "".join(cur).strip()
        if text:
            segments.append(text)
        cur.clear()

    while i < len(script):
        c = script[i]
        if quote == "'":
            cur.append(c)
            if c == "'":
                quote = None
            i += 1
            continue
        if c == "$" and script.startswith("$((", i):
            j = matching(script, i + 3, "((", "))")
            cur.append("ARITH")
            i = j
            word_start = False
            continue
        if c == "$" and script.startswith("$(", i):
            j = matching(script, i + 2, "(", ")")
            found.extend(split_script(script[i + 2:j - 1]))
            cur.append("SUBST")
            i = j
            word_start = False
            continue
        if c == "`":
            j = script.find("`", i + 1)
            j = len(script) if j < 0 else j
            found.extend(split_script(script[i + 1:j]))
            cur.append("SUBST")
            i = j + 1
            word_start = False
            continue
        if quote == '"':
            cur.append(c)
            if c == "\\" and i + 1 < len(script):
                cur.append(script[i + 1])
                i += 2
                continue
            if c == '"':
                quote = None
            i += 1
            continue
        # Unquoted.
        if c in "'\"":
            quote = c
            cur.append(c)
        elif c == "\\" and i + 1 < len(script):
            cur.append(script[i:i + 2])
            i += 2
            word_start = False
            continue
        elif c == "#" and word_start:
            j = script.find("\n", i)
            i = len(script) if j < 0 else j
            continue
        elif c == "&" and (script[i - 1:i] in (">", "<") or script[i + 1:i + 2] == ">"):
            cur.append(c)  # a redirection: 2>&1, &>file
        elif c in ";&|\n()":
            flush()
            word_start = True
            i += 1
            continue
        else:
            cur.append(c)
        word_start = c.isspace()
        i += 1
    flush()
    commands = []
    for text in segments:
        try:
            words = shlex.split(text, posix=True)
        except ValueError:
            words = text.split()
        words = strip_prefixes(words)
        if words:
            commands.append(words)
    return commands + found


def strip_prefixes(words: list[str]) -> list[str]:
    """Drops assignments, keywords and wrappers (env, timeout, sudo, taskset)."""
    i = 0
    while i < len(words):
        w = words[i]
        if ASSIGNMENT.match(w) or w in KEYWORDS:
            i += 1
        elif w == "env":
            i += 1
            while i < len(words) and (words[i].startswith("-") or ASSIGNMENT.match(words[i])):
                i += 2 if words[i] in ("-u", "--unset", "-C", "--chdir") else 1
        elif w == "sudo":
            i += 1
            while i < len(words) and words[i].startswith("-"):
                i += 2 if words[i] in ("-u", "-g") else 1
        elif w == "timeout":
            i += 1
            while i < len(words) and words[i].startswith("-"):
                i += 2 if words[i] in ("-s", "--signal", "-k", "--kill-after") else 1
            i += 1  # the duration
        elif w == "taskset":
            i += 1
            while i < len(words) and words[i].startswith("-"):
                i += 1
            i += 1  # the CPU list or mask
        else:
            break
    return words[i:]


def container_commands(container: dict) -> list[list[str]]:
    command = [str(x) for x in container.get("command") or []]
    args = [str(x) for x in container.get("args") or []]
    argv = command + args
    if not argv:
        return []
    if os.path.basename(argv[0]) in ("sh", "bash", "dash", "ash") and "-c" in argv[1:]:
        k = argv.index("-c", 1)
        return split_script(argv[k + 1]) if k + 1 < len(argv) else []
    return [strip_prefixes(argv)]


# ---------------------------------------------------------------------------
# Invocations

def is_servegate(word: str) -> bool:
    w = word.rstrip("/")
    return (os.path.basename(w) == "servegate"
            or w in ("$SERVEGATE", "${SERVEGATE}"))


def check_flags(args: list[str], opts: dict[str, object], what: str) -> list[str]:
    bad = []
    j = 0
    while j < len(args):
        a = args[j]
        if a == "--":
            break
        if a.startswith("--"):
            name, eq, _ = a.partition("=")
            if name not in opts:
                bad.append(f"{what}: unknown flag {name}")
            elif opts[name] is True and not eq:
                j += 1
        elif a.startswith("-") and len(a) > 1 and not a[1].isdigit():
            for k, ch in enumerate(a[1:]):
                flag = "-" + ch
                if flag not in opts:
                    bad.append(f"{what}: unknown flag {flag}")
                    break
                if opts[flag] is True:
                    if k == len(a) - 2:
                        j += 1
                    break
        j += 1
    return bad


def check_servegate(args: list[str], tools: Tools) -> list[str]:
    i = 0
    while i < len(args) and args[i].startswith("-"):
        name, eq, _ = args[i].partition("=")
        if name not in tools.global_opts:
            return [f"servegate: unknown flag {name} before the subcommand"]
        if name in ("-h", "--help", "-V", "--version"):
            return []
        if tools.global_opts[name] is True and not eq:
            i += 1
        i += 1
    if i >= len(args):
        return ["servegate: no subcommand"]
    sub = args[i]
    opts = tools.subcommand(sub)
    if opts is None:
        known = ", ".join(c for c in tools.commands if c != "help")
        return [f"servegate {sub}: no such subcommand (the binary has: {known})"]
    return check_flags(args[i + 1:], opts, f"servegate {sub}")


def check_nextest(args: list[str], tools: Tools) -> list[str]:
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1
    if i >= len(args):
        return []
    sub = args[i]
    opts = tools.nextest(sub)
    if opts is None:
        return [f"cargo nextest {sub}: not checked here (only {', '.join(NEXTEST_SUBCOMMANDS)})"]
    return check_flags(args[i + 1:], opts, f"cargo nextest {sub}")


def check_command(words: list[str], tools: Tools, label: str) -> list[str]:
    errors = invocation_errors(words, tools)
    if errors is not None:
        tools.checked.append(f"{label}: {shlex.join(words)}")
    return errors or []


def invocation_errors(words: list[str], tools: Tools) -> list[str] | None:
    """Problems of one simple command; None when it calls neither servegate nor nextest."""
    first = words[0]
    if is_servegate(first):
        return check_servegate(words[1:], tools)
    if first == "cargo" and len(words) > 1:
        if words[1] == "nextest":
            return check_nextest(words[2:], tools)
        if words[1] == "run":
            rest = words[2:]
            if "--bin" in rest:
                k = rest.index("--bin")
                if k + 1 < len(rest) and rest[k + 1] != "servegate":
                    return None
            if "--" in rest:
                return check_servegate(rest[rest.index("--") + 1:], tools)
            return ["servegate: no subcommand (`cargo run` without `-- SUB`)"]
    if os.path.basename(first) == "cargo-nextest" and len(words) > 1 and words[1] == "nextest":
        return check_nextest(words[2:], tools)
    return None


def partition_counts(commands: list[list[str]]) -> list[int]:
    counts = []
    for words in commands:
        for k, w in enumerate(words):
            value = None
            if w == "--partition" and k + 1 < len(words):
                value = words[k + 1]
            elif w.startswith("--partition="):
                value = w.split("=", 1)[1]
            m = PARTITION.match(value or "")
            if m:
                counts.append(int(m.group(1)))
    return counts


# ---------------------------------------------------------------------------
# Files

def check_workflow(name: str, doc: dict, tools: Tools) -> list[str]:
    errors = []
    on = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` as true
    if on is None:
        errors.append(f"{name}: no `on` (the events that start the workflow)")
    jobs = doc.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        errors.append(f"{name}: no `jobs`")
        return errors
    inputs = set()
    if isinstance(on, dict):
        for event in ("workflow_dispatch", "workflow_call"):
            spec = on.get(event)
            if isinstance(spec, dict) and isinstance(spec.get("inputs"), dict):
                inputs |= set(spec["inputs"])
    for job_id, job in jobs.items():
        where = f"{name}: job {job_id}"
        if not isinstance(job, dict):
            errors.append(f"{where}: not a mapping")
            continue
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            if need not in jobs:
                errors.append(f"{where}: needs `{need}`, which is no job of this file")
        text = yaml.safe_dump(job, width=float("inf"))
        matrix = (job.get("strategy") or {}).get("matrix") or {}
        # A matrix computed by an expression has keys known only at run time.
        keys = set(matrix) if isinstance(matrix, dict) else None
        for entry in (matrix.get("include") or []) if isinstance(matrix, dict) else []:
            if isinstance(entry, dict):
                keys |= set(entry)
        for m in GH_EXPR.finditer(text):
            for ref in re.findall(r"\bmatrix\.([A-Za-z_][\w-]*)", m.group(1)):
                if keys is not None and ref not in keys:
                    errors.append(f"{where}: `matrix.{ref}` is not in the job's matrix")
            for ref in re.findall(r"\binputs\.([A-Za-z_][\w-]*)", m.group(1)):
                if ref not in inputs:
                    errors.append(f"{where}: `inputs.{ref}` is not an input of the workflow")
        if "uses" in job:
            continue  # a reusable workflow: no runner, no steps of its own
        if "runs-on" not in job:
            errors.append(f"{where}: no `runs-on`")
        steps = job.get("steps")
        if not isinstance(steps, list) or not steps:
            errors.append(f"{where}: no `steps`")
            continue
        for n, step in enumerate(steps, 1):
            label = f"{where}, step {n}"
            if isinstance(step, dict) and step.get("name"):
                label += f" ({step['name']!r})"
            if not isinstance(step, dict) or ("run" in step) == ("uses" in step):
                errors.append(f"{label}: needs exactly one of `run` and `uses`")
                continue
            if "run" not in step:
                continue
            default = ((job.get("defaults") or {}).get("run") or {}).get("shell", "bash")
            shell = str(step.get("shell", default))
            if shell.split()[0] not in ("bash", "sh"):
                continue  # python or pwsh: not shell commands
            for words in split_script(str(step["run"])):
                errors.extend(f"{label}: {e}" for e in check_command(words, tools, label))
    return errors


def k8s_jobs(docs: list) -> list[dict]:
    return [d for d in docs if isinstance(d, dict) and d.get("kind") == "Job"]


def containers_of(pod_spec: dict) -> list[dict]:
    out = []
    for key in ("initContainers", "containers"):
        out.extend(c for c in pod_spec.get(key) or [] if isinstance(c, dict))
    return out


def check_k8s(name: str, docs: list, tools: Tools) -> list[str]:
    errors = []
    jobs = k8s_jobs(docs)
    if not jobs:
        errors.append(f"{name}: a Kubernetes file here must hold an Indexed Job")
    for job in jobs:
        job_name = (job.get("metadata") or {}).get("name", "?")
        where = f"{name}: Job {job_name}"
        spec = job.get("spec") or {}
        if spec.get("completionMode") != "Indexed":
            errors.append(f"{where}: completionMode is not Indexed")
        completions = spec.get("completions")
        for key in ("completions", "parallelism"):
            if not isinstance(spec.get(key), int) or spec[key] < 1:
                errors.append(f"{where}: `{key}` must be a positive number")
        pod = ((spec.get("template") or {}).get("spec")) or {}
        containers = containers_of(pod)
        if not containers:
            errors.append(f"{where}: no containers")
        if "JOB_COMPLETION_INDEX" not in yaml.safe_dump(containers, width=float("inf")):
            errors.append(f"{where}: no container uses JOB_COMPLETION_INDEX")
        for c in containers:
            label = f"{where}, container {c.get('name', '?')}"
            commands = container_commands(c)
            for words in commands:
                errors.extend(f"{label}: {e}" for e in check_command(words, tools, label))
            for n in partition_counts(commands):
                if isinstance(completions, int) and n != completions:
                    errors.append(f"{label}: --partition counts {n} parts, completions is {completions}")
    return errors


def validate(ci_dir: Path, tools: Tools) -> list[str]:
    files = sorted(list(ci_dir.glob("*.yml")) + list(ci_dir.glob("*.yaml")))
    if not files:
        return [f"{ci_dir}: no *.yml or *.yaml files"]
    errors = []
    for path in files:
        name = f"{ci_dir.name}/{path.name}"
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as e:
            errors.append(f"{name}: not valid YAML: {e}")
            continue
        if any(isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in docs):
            errors.extend(check_k8s(name, docs, tools))
        elif len(docs) == 1 and isinstance(docs[0], dict) and ("jobs" in docs[0] or "on" in docs[0] or True in docs[0]):
            errors.extend(check_workflow(name, docs[0], tools))
        else:
            errors.append(f"{name}: neither a GitHub Actions workflow nor a Kubernetes manifest")
    return errors


# ---------------------------------------------------------------------------
# Self-test

BROKEN_WORKFLOW = """\
name: broken
on: push
jobs:
  a:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        part: [1, 2]
    steps:
      - name: unknown run flag
        run: servegate run --no-such-flag
      - name: unknown subcommand
        run: ./target/release/servegate frobnicate --output x
      - name: unknown nextest flag
        run: cargo nextest run --profile ci --no-such-nextest-flag
      - name: cargo run form
        run: cargo run --release -- report results --htm x.html
      - name: merge flag
        run: servegate merge results/part-*/cases --junit-xml j.xml
      - name: nested
        run: |
          echo "cases: $(servegate list --bogus-nested | wc -l)"
      - name: after a pipe
        run: SERVEGATE_WARMUP=1 timeout 60 "$SERVEGATE" check && servegate gpu --jsn
      - name: archive
        run: cargo nextest archive --archive-file a.tar.zst --workspace-remap .
      - name: matrix typo
        run: echo ${{ matrix.prt }}
  b:
    needs: [a, nonexistent]
    steps:
      - run: "true"
"""

NO_JOBS = "name: nothing\non: push\n"

BROKEN_K8S = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: not-indexed
spec:
  completions: 3
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: gate
          image: example
          command: ["/bin/bash", "-c"]
          args:
            - |
              cargo-nextest nextest run --partition hash:1/4 --archive-file a.tar.zst --no-such-k8s-flag
              /opt/servegate gpu --jason
"""

GOOD_WORKFLOW = """\
name: good
on:
  workflow_dispatch:
    inputs:
      model:
        type: string
jobs:
  a:
    runs-on: [self-hosted, gpu]
    strategy:
      matrix:
        part: [1, 2]
    steps:
      - uses: actions/checkout@v4
      - name: everything allowed
        env:
          MODEL: ${{ inputs.model }}
        run: |
          # servegate run --commented-out is a comment
          SERVEGATE_WARMUP=1 timeout 60 servegate run --output "results/run-$(date -u +%Y%m%d).json" --save-detailed
          servegate --root . list --reasons | head -3
          "$SERVEGATE" report history --html history/report.html
          ./target/release/servegate merge results/part-*/cases --output m.json --markdown s.md --html r.html --junit j.xml
          cargo run --release -- gpu --json > gpu.json 2>&1
          echo 'servegate run --quoted-text-is-not-a-command'
          K=$((1 + 2)); echo "$K ${{ matrix.part }}"
          cargo nextest run --profile ci --partition "hash:${{ matrix.part }}/2" --no-tests=pass -E 'binary(gate)'
          cargo nextest archive --archive-file gate.tar.zst --test gate --release -F cuda
          python3 - <<'PY'
          print("servegate run --in-a-heredoc is not a command")
          PY
      - name: python step
        shell: python
        run: print("servegate run --python-is-not-shell")
"""


# A servegate that has `merge`, with only `--output`: the binary's own help
# must then decide, not PENDING.
FAKE_WITH_MERGE = """\
#!/usr/bin/env bash
real={real}
if [ "$1" = "--help" ]; then
    "$real" --help | sed 's/^Commands:$/Commands:\\n  merge  Merge partitions/'
    exit 0
fi
if [ "$1" = merge ]; then
    printf 'Usage: servegate merge [OPTIONS] <PARTS>...\\n\\nOptions:\\n      --output <OUTPUT>  Results file\\n  -h, --help  Print help\\n'
    exit 0
fi
exec "$real" "$@"
"""

MERGE_WORKFLOW = """\
on: push
jobs:
  m:
    runs-on: [self-hosted, gpu]
    steps:
      - run: servegate merge results/part-*/cases --output merged.json --junit junit.xml
"""


def self_test(servegate: str) -> int:
    expected = [
        "broken.yml: job a, step 1 ('unknown run flag'): servegate run: unknown flag --no-such-flag",
        "broken.yml: job a, step 2 ('unknown subcommand'): servegate frobnicate: no such subcommand",
        "broken.yml: job a, step 3 ('unknown nextest flag'): cargo nextest run: unknown flag --no-such-nextest-flag",
        "broken.yml: job a, step 4 ('cargo run form'): servegate report: unknown flag --htm",
        "broken.yml: job a, step 5 ('merge flag'): servegate merge: unknown flag --junit-xml",
        "broken.yml: job a, step 6 ('nested'): servegate list: unknown flag --bogus-nested",
        "broken.yml: job a, step 7 ('after a pipe'): servegate gpu: unknown flag --jsn",
        "broken.yml: job a, step 8 ('archive'): cargo nextest archive: unknown flag --workspace-remap",
        "broken.yml: job a: `matrix.prt` is not in the job's matrix",
        "broken.yml: job b: needs `nonexistent`",
        "broken.yml: job b: no `runs-on`",
        "no-jobs.yml: no `jobs`",
        "k8s.yaml: Job not-indexed: completionMode is not Indexed",
        "k8s.yaml: Job not-indexed: no container uses JOB_COMPLETION_INDEX",
        "k8s.yaml: Job not-indexed, container gate: cargo nextest run: unknown flag --no-such-k8s-flag",
        "k8s.yaml: Job not-indexed, container gate: servegate gpu: unknown flag --jason",
        "k8s.yaml: Job not-indexed, container gate: --partition counts 4 parts, completions is 3",
    ]
    me = str(Path(__file__).resolve())
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp, "bad", "ci")
        good = Path(tmp, "good", "ci")
        bad.mkdir(parents=True)
        good.mkdir(parents=True)
        (bad / "broken.yml").write_text(BROKEN_WORKFLOW)
        (bad / "no-jobs.yml").write_text(NO_JOBS)
        (bad / "k8s.yaml").write_text(BROKEN_K8S)
        (good / "good.yml").write_text(GOOD_WORKFLOW)

        out = subprocess.run([sys.executable, me, servegate, "--ci-dir", str(bad)],
                             capture_output=True, text=True)
        if out.returncode != 1:
            failures.append(f"broken files: exit status {out.returncode}, expected 1")
        for e in expected:
            if e not in out.stdout:
                failures.append(f"broken files: not reported: {e}")
        out_good = subprocess.run([sys.executable, me, servegate, "--ci-dir", str(good)],
                                  capture_output=True, text=True)
        if out_good.returncode != 0:
            failures.append(f"correct file rejected (exit {out_good.returncode}):\n"
                            + textwrap.indent(out_good.stdout + out_good.stderr, "  "))

        # Once the binary lists `merge`, its help decides and PENDING is unused.
        fake = Path(tmp, "servegate")
        fake.write_text(FAKE_WITH_MERGE.format(real=shlex.quote(str(Path(servegate).resolve()))))
        fake.chmod(0o755)
        merge_dir = Path(tmp, "merge", "ci")
        merge_dir.mkdir(parents=True)
        (merge_dir / "merge.yml").write_text(MERGE_WORKFLOW)
        out_merge = subprocess.run([sys.executable, me, str(fake), "--ci-dir", str(merge_dir)],
                                   capture_output=True, text=True)
        want = "merge.yml: job m, step 1: servegate merge: unknown flag --junit"
        if out_merge.returncode != 1 or want not in out_merge.stdout \
                or "servegate merge: unknown flag --output" in out_merge.stdout:
            failures.append("with a binary that has `merge`, its own help did not decide:\n"
                            + textwrap.indent(out_merge.stdout + out_merge.stderr, "  "))
    if failures:
        print("validate-workflows self-test FAILED:")
        for f in failures:
            print(f"  {f}")
        print("checker output on the broken files:")
        print(textwrap.indent(out.stdout + out.stderr, "  "))
        return 1
    print(f"validate-workflows self-test: ok ({len(expected)} faults caught, the correct file accepted, "
          "PENDING dropped once the binary has the subcommand)")
    return 0


# ---------------------------------------------------------------------------

def main() -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("servegate", nargs="?", default=str(here.parent / "target/debug/servegate"),
                        help="a built servegate binary (default: target/debug/servegate)")
    parser.add_argument("--ci-dir", type=Path, default=here, help="folder of the files to check (default: ci/)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every invocation checked")
    parser.add_argument("--self-test", action="store_true",
                        help="check that broken files are caught and a correct one accepted")
    args = parser.parse_args()
    if args.self_test:
        return self_test(args.servegate)
    try:
        tools = Tools(args.servegate)
        errors = validate(args.ci_dir, tools)
    except ToolError as e:
        print(f"validate-workflows: {e}", file=sys.stderr)
        return 2
    if args.verbose:
        for line in tools.checked:
            print(f"checked {line}")
    for sub in PENDING:
        if sub not in tools.pending:
            print(f"note: the binary has `{sub}` now; its PENDING entry in {Path(__file__).name} can go")
    if errors:
        for e in errors:
            print(e)
        print(f"validate-workflows: {len(errors)} problem(s)")
        return 1
    pending = ", ".join(sorted(tools.pending)) or "none"
    print(f"validate-workflows: ok ({args.ci_dir.name}/*.yml, *.yaml; pending subcommands taken from the table: {pending})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
