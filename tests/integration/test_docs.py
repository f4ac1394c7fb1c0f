"""test_docs.py - the documents that point into the code must not drift.

No cluster: this reads files only. docs/LIFECYCLE.md (and docs/HACKING.md)
name functions and tests in two fixed forms, inside backticks:

    `src/master/gc.c:efs_gc_run_once()`                 a function definition
    `tests/unit/test_meta_files.c::test_dedup_put`       a test definition
    `tests/integration/test_faults.py::test_name`        (C or Python)

Every such reference must name an existing file that defines it. Every row
of LIFECYCLE.md's transition table (`| T<n> |`) and race rules (`| R<n> |`)
must name at least one function and one test.

When code moves, the failure names each missing reference with its line,
and where the function or test is defined now when it can find it.

Every environment variable a daemon reads by name (efs_env_*() or
getenv() in src/master or src/worker) must be listed in its man page
(`.B NAME`) and named in docs/OPERATIONS.md.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIFECYCLE = ROOT / "docs" / "LIFECYCLE.md"
CHECKED_DOCS = [LIFECYCLE, ROOT / "docs" / "HACKING.md"]

FUNC_REF = re.compile(r"`((?:src|include|tests)/[\w./-]+\.[ch]):(\w+)\(\)`")
TEST_REF = re.compile(r"`(tests/[\w./-]+\.(?:c|py))::(\w+)`")
ROW = re.compile(r"^\|\s*([TR]\d+)\s*\|")

# Every state the document must describe.
STATES = ["being written", "recorded", "referenced", "unreferenced", "collected", "orphan",
          "bad", "quarantined", "under-replicated", "repair"]


def c_defines(text: str, name: str) -> bool:
    """Whether C source @text defines function @name: a line that starts in
    column 0 (not a comment, directive or continuation), names it, and whose
    parameter list is followed by a body rather than a ';'."""
    pattern = (r"^(?![\s#/*])[^\n;{}()=]*?\b" + re.escape(name) +
               r"\s*\([^;{}]*?\)\s*\{")
    return re.search(pattern, text, re.M) is not None


def py_defines(text: str, name: str) -> bool:
    return re.search(r"^\s*(?:async\s+)?def\s+" + re.escape(name) + r"\s*\(", text,
                     re.M) is not None


def defines(path: Path, name: str) -> bool:
    text = path.read_text(errors="replace")
    return py_defines(text, name) if path.suffix == ".py" else c_defines(text, name)


def defined_elsewhere(rel: str, name: str) -> list[str]:
    """Files under the reference's top directory (src/, tests/, include/)
    that define @name: where a moved function went."""
    top = ROOT / rel.split("/", 1)[0]
    suffixes = {".py"} if rel.endswith(".py") else {".c", ".h"}
    found = [str(p.relative_to(ROOT)) for p in sorted(top.rglob("*"))
             if p.suffix in suffixes and p.is_file() and defines(p, name)]
    return found[:4]


def references(doc: Path):
    """(line number, line, kind, file, name) for every reference of @doc."""
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        for m in FUNC_REF.finditer(line):
            yield number, line, "function", m.group(1), m.group(2)
        for m in TEST_REF.finditer(line):
            yield number, line, "test", m.group(1), m.group(2)


def missing_reference(kind: str, rel: str, name: str) -> str | None:
    """Why the reference is broken, or None when it holds."""
    what = f"{name}()" if kind == "function" else f"test {name}"
    path = ROOT / rel
    if path.is_file() and defines(path, name):
        return None
    where = defined_elsewhere(rel, name)
    moved = f"; now defined in {', '.join(where)}" if where else \
        "; defined nowhere under " + rel.split("/", 1)[0] + "/ (renamed or removed?)"
    if not path.is_file():
        return f"{rel} does not exist{moved}"
    return f"{rel} does not define {what}{moved}"


def existing_docs():
    return [d for d in CHECKED_DOCS if d.exists()]


def test_lifecycle_document_exists_and_names_every_state():
    assert LIFECYCLE.is_file(), "docs/LIFECYCLE.md is missing"
    text = LIFECYCLE.read_text().lower()
    absent = [s for s in STATES if s not in text]
    assert not absent, f"docs/LIFECYCLE.md does not describe the states: {absent}"


@pytest.mark.parametrize("doc", existing_docs(), ids=lambda d: d.name)
def test_every_reference_names_an_existing_definition(doc):
    refs = list(references(doc))
    if doc == LIFECYCLE:
        assert len(refs) >= 50, f"only {len(refs)} references in {doc.name}: parsing broke?"
    problems = []
    for number, _, kind, rel, name in refs:
        why = missing_reference(kind, rel, name)
        if why:
            shown = f"{rel}:{name}()" if kind == "function" else f"{rel}::{name}"
            problems.append(f"docs/{doc.name}:{number}: `{shown}`: {why}")
    if problems:
        pytest.fail(f"{len(problems)} broken references:\n" + "\n".join(problems),
                    pytrace=False)


def test_every_transition_and_rule_names_a_function_and_a_test():
    rows = {}
    problems = []
    for number, line in enumerate(LIFECYCLE.read_text().splitlines(), 1):
        m = ROW.match(line)
        if not m:
            continue
        row_id = m.group(1)
        if row_id in rows:
            problems.append(f"docs/LIFECYCLE.md:{number}: {row_id} used twice "
                            f"(first on line {rows[row_id]})")
        rows[row_id] = number
        functions = FUNC_REF.findall(line)
        tests = TEST_REF.findall(line)
        if not functions:
            problems.append(f"docs/LIFECYCLE.md:{number}: {row_id} names no function "
                            "(`path/file.c:function()`)")
        if not tests:
            problems.append(f"docs/LIFECYCLE.md:{number}: {row_id} names no test "
                            "(`tests/.../file::test_name`)")
    transitions = [r for r in rows if r.startswith("T")]
    rules = [r for r in rows if r.startswith("R")]
    assert len(transitions) >= 20 and len(rules) >= 5, \
        f"{len(transitions)} transitions and {len(rules)} race rules found: table parsing broke?"
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def test_the_definition_finder_tells_definitions_from_mentions():
    """The checker itself: definitions over several lines count; prototypes,
    calls, comments and macros do not."""
    source = """
/* efs_gc_run_once() in a comment */
int efs_gc_run_once(struct efs_master *m);
#define judge(x) (x)
static int judge(struct sql_conn *c, const struct efs_report_context *ctx,
		 struct efs_report_entry *e)
{
	return efs_gc_run_once(NULL);
}
int sql_garbage_list(void *impl, int64_t before_ms, size_t max, char (*ids)[65], size_t *count)
{
}
"""
    assert c_defines(source, "judge")
    assert c_defines(source, "sql_garbage_list")
    assert not c_defines(source, "efs_gc_run_once")
    assert not c_defines(source, "efs_store_delete")
    assert py_defines("def test_a(cluster):\n    pass\n", "test_a")
    assert not py_defines("x = test_a(cluster)\n", "test_a")
    line = "| T1 | a | b | `src/master/gc.c:efs_gc_run_once()` | `tests/x/test_y.py::test_z` |"
    assert FUNC_REF.findall(line) == [("src/master/gc.c", "efs_gc_run_once")]
    assert TEST_REF.findall(line) == [("tests/x/test_y.py", "test_z")]
    assert missing_reference("function", "src/master/gc.c", "no_such_function_here")
    assert missing_reference("function", "src/master/gc.c", "efs_gc_run_once") is None


# ---- settings: every variable a daemon reads is documented ----------------

# How the daemons read a setting by name: efs_env_u64("CHUNK_SIZE", ...),
# efs_env_str(...), getenv("...").
SETTING_READ = re.compile(r"\b(?:efs_env_\w+|getenv)\(\s*\"([A-Z][A-Z0-9_]+)\"")


def settings_read(daemon: str) -> set:
    names = set()
    for path in sorted((ROOT / "src" / daemon).glob("*.c")):
        names.update(SETTING_READ.findall(path.read_text(encoding="utf-8")))
    return names


@pytest.mark.parametrize("daemon", ["master", "worker"])
def test_every_setting_a_daemon_reads_is_in_its_man_page_and_operations(daemon):
    names = settings_read(daemon)
    assert len(names) > 10, f"the pattern found only {sorted(names)} in src/{daemon}"
    man = (ROOT / "man" / f"echofs-{daemon}.8").read_text(encoding="utf-8")
    ops = (ROOT / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    missing_man = sorted(n for n in names if not re.search(r"\.B " + n + r"\b", man))
    missing_ops = sorted(n for n in names if f"`{n}`" not in ops)
    assert not missing_man, f"man/echofs-{daemon}.8 does not list {missing_man}"
    assert not missing_ops, f"docs/OPERATIONS.md does not name {missing_ops}"


def test_the_setting_pattern_finds_reads_only():
    src = ('efs_env_u64("HEADER_TIMEOUT_MS", 1, 2);\n'
           'const char *v = getenv( "MASTER_URL");\n'
           'efs_info("set CHUNK_SIZE");\n')
    assert SETTING_READ.findall(src) == ["HEADER_TIMEOUT_MS", "MASTER_URL"]
