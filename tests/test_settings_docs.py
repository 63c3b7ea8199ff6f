"""The daemon's settings and their documentation say the same thing.

The settings table comes from the daemon itself (`--list-settings`, one
tab-separated line per setting: name, flag, value, default, range,
notes). Every setting's name, flag, syntax, default and range is checked
against docs/offload_daemon.md (its Syntax / Default / Context entries),
dist/offload_daemon.8 (its CONFIGURATION entries), the commented entries
of dist/offload_daemon.conf and `--help`, so that a setting added,
renamed or changed in one place and not in the others fails here. Then
what `-t` and a start do with the settings the documents promise.
"""

import os
import re
import subprocess

import pytest

import harness
from harness import wait_for

DAEMON = harness.DAEMON_BIN
MD = os.path.join(harness.REPO, "docs", "offload_daemon.md")
MAN = os.path.join(harness.REPO, "dist", "offload_daemon.8")
CONF = os.path.join(harness.REPO, "dist", "offload_daemon.conf")


class Setting:
    def __init__(self, line):
        (self.name, self.flag, self.value, self.default, self.range,
         notes) = line.split("\t")
        self.required = "required" in notes.split()
        self.restart = "restart" in notes.split()

    def __repr__(self):
        return self.name


def run(*args):
    p = subprocess.run([DAEMON] + list(args), capture_output=True, text=True,
                       timeout=10)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def table():
    rc, out, err = run("--list-settings")
    assert rc == 0 and err == "", err
    settings = [Setting(line) for line in out.splitlines()]
    assert len(settings) >= 20
    assert len({s.name.lower() for s in settings}) == len(settings)
    assert len({s.flag for s in settings}) == len(settings)
    return settings


def read(path):
    with open(path) as f:
        return f.read()


def starts_with_value(text, value):
    """text begins with value, then its end or a separator."""
    return (text == value or text.startswith(value) and
            text[len(value)] in " .,;:(")


def squash(text):
    return re.sub(r"\s+", " ", text).strip()


# ---------------------------------------------------------------- the Markdown reference

def md_entries():
    """{name: (fields of its table, its text)} of the ## Settings section."""
    text = read(MD)
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    entries = {}
    for chunk in section.split("\n### ")[1:]:
        name, body = chunk.split("\n", 1)
        fields = {}
        for row in re.findall(r"^\|(.*)\|\s*$", body, re.M):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)]
            if len(cells) == 2 and cells[0] and not cells[0].startswith("-"):
                fields[cells[0]] = cells[1].replace("\\|", "|")
        entries[name.strip()] = (fields, body)
    return entries


def test_markdown_entries_match_the_table(table):
    entries = md_entries()
    assert sorted(entries) == sorted(s.name for s in table)
    for s in table:
        fields, body = entries[s.name]
        syntax = "`%s %s`" % (s.name, s.value)
        if s.range:
            syntax += " (%s)" % s.range
        assert fields.get("Syntax") == syntax, s
        assert fields.get("Context") == "config file, flag `%s`" % s.flag, s
        default = fields.get("Default", "").replace("`", "")
        assert starts_with_value(default, s.default), (s, default)
        if s.required:
            assert "required" in default, s
        if s.restart:
            assert "restart" in body, s


def test_markdown_names_every_flag_and_the_dump(table):
    text = read(MD)
    assert "--list-settings" in text
    # the command line section names every list flag that replaces a list
    lists = [s.flag for s in table if s.range.startswith("repeatable")]
    intro = text.split("\n## Command line\n", 1)[1].split("\n### ", 1)[0]
    for flag in lists:
        assert "`%s`" % flag in intro, flag


# ---------------------------------------------------------------- the man page

def roff_text(lines):
    """The text of roff lines, without macros, fonts and escapes."""
    out = []
    for line in lines:
        if line.startswith(".\\\""):
            continue
        m = re.match(r"\.(B|I|BI|BR|IB|IR|RB|RI)\s+(.*)", line)
        if m:
            args = re.findall(r'"([^"]*)"|(\S+)', m.group(2))
            words = [a or b for a, b in args]
            line = (" " if len(m.group(1)) == 1 else "").join(words)
        elif line.startswith("."):
            continue
        out.append(line)
    text = " ".join(out)
    for esc, plain in (("\\-", "-"), ("\\(dq", '"'), ("\\c ", ""),
                       ("\\c", ""), ("\\&", ""), ("\\ ", " ")):
        text = text.replace(esc, plain)
    text = re.sub(r"\\f[BIRP]", "", text)
    return squash(text)


def man_entries():
    """{name: (tag, text)} of the CONFIGURATION section's .TP entries."""
    text = read(MAN)
    section = text.split("\n.SH CONFIGURATION\n", 1)[1].split("\n.SH ", 1)[0]
    entries = {}
    for chunk in section.split("\n.TP\n")[1:]:
        lines = chunk.split("\n")
        tag = roff_text(lines[:1])
        entries[tag.split()[0]] = (tag, roff_text(lines[1:]))
    return entries


def test_man_page_entries_match_the_table(table):
    entries = man_entries()
    assert sorted(entries) == sorted(s.name for s in table)
    for s in table:
        tag, body = entries[s.name]
        want = "%s %s, %s %s" % (s.name, s.value, s.flag, s.value)
        assert tag.replace(" | ", "|").lower() == want.lower(), (s, tag)
        m = re.search(r"Default: (.*)", body)
        assert m and starts_with_value(m.group(1), s.default), (s, body)
        if s.range:
            assert s.range.lower() in body.lower(), (s, body)
        if s.required:
            assert "required" in body, s


def test_man_page_names_the_dump_and_what_needs_a_restart(table):
    text = read(MAN)
    assert "\\-\\-list\\-settings" in text
    signals = roff_text(text.split("\n.SH SIGNALS\n", 1)[1]
                        .split("\n.SH ", 1)[0].split("\n"))
    hup = signals.split("SIGHUP", 1)[1].split("SIGUSR1", 1)[0]
    for s in table:
        assert (s.name in hup) == s.restart, (s, hup)


# ---------------------------------------------------------------- the sample config

def conf_entries():
    """{name: (example values, comment text)}: each block of comments and
    the setting lines (active or commented out) that follow it."""
    entries, comment, last = {}, [], None
    for line in read(CONF).split("\n"):
        m = re.match(r"#?([A-Z][A-Za-z]+) (\S.*)$", line)
        if m:
            name = m.group(1)
            if name != last:
                entries[name] = ([], squash(" ".join(comment)))
            entries[name][0].append(m.group(2))
            comment, last = [], name
        elif line.startswith("#"):
            comment.append(line[1:])
            last = None
        else:
            comment, last = ([] if line == "" else comment), None
    return entries


def test_sample_config_entries_match_the_table(table):
    entries = conf_entries()
    assert sorted(entries) == sorted(s.name for s in table)
    for s in table:
        _values, text = entries[s.name]
        m = re.search(r"Default: (.*)", text)
        assert m and starts_with_value(m.group(1), s.default), (s, text)
        if s.range:
            assert s.range.lower() in text.lower(), (s, text)
        if s.required:
            assert "Required" in text, s


def test_sample_config_header_names_what_needs_a_restart(table):
    header = squash(" ".join(
        line[1:] for line in read(CONF).split("\nBaseURL ", 1)[0].split("\n")))
    sentence = [t for t in header.split(". ") if "at a restart" in t]
    assert len(sentence) == 1, header
    for s in table:
        assert (s.name in sentence[0]) == s.restart, (s, sentence)


def test_sample_config_values_are_accepted(run_dir, table):
    """Every example, also those commented out, is a valid value; the
    paths and the user are overridden with flags to ones that exist."""
    text = ""
    for name, (values, _text) in conf_entries().items():
        for v in values:
            text += "%s %s\n" % (name, v)
    conf = os.path.join(run_dir, "sample.conf")
    with open(conf, "w") as f:
        f.write(text)
    user = subprocess.run(["id", "-un"], capture_output=True,
                          text=True).stdout.strip()
    rc, out, err = run("-t", "-f", conf, "--cache-dir", run_dir,
                       "--access-log", os.path.join(run_dir, "a.log"),
                       "--error-log", os.path.join(run_dir, "e.log"),
                       "--pid-file", os.path.join(run_dir, "d.pid"),
                       "--docroot", run_dir, "--user", user)
    assert rc == 0, out + err


# ---------------------------------------------------------------- --help

def test_help_shows_the_table(table):
    rc, out, _err = run("--help")
    assert rc == 0
    lines = out.split("\n")
    for s in table:
        head = [i for i, line in enumerate(lines)
                if line.split()[:1] == [s.name]]
        assert len(head) == 1, s
        i = head[0]
        assert lines[i].split() == [s.name, s.value, s.flag], lines[i]
        words = ["required"] if s.required else ["default", s.default]
        if s.range:
            words[-1] += ";"
            words.append(s.range)
        assert lines[i + 1].strip() == " ".join(words), lines[i + 1]


# ---------------------------------------------------------------- -t and the start

def test_a_missing_base_url_is_the_only_complaint(run_dir):
    conf = os.path.join(run_dir, "empty.conf")
    with open(conf, "w") as f:
        f.write("# nothing but defaults\n")
    rc, out, err = run("-t", "-f", conf)
    assert rc == 1 and out == ""
    assert err.splitlines() == [
        "offload_daemon: BaseURL (--base) is required: give it in the config "
        "file (BaseURL http://HOST[:PORT][/PREFIX]) or with --base"]


def test_check_accepts_a_missing_pid_directory_and_start_creates_it(
        run_dir, daemon_factory):
    pid_dir = os.path.join(run_dir, "run")
    pid_file = os.path.join(pid_dir, "offload_daemon.pid")
    cache = os.path.join(run_dir, "cache")
    os.makedirs(cache)
    rc, out, err = run("-t", "--base", "http://127.0.0.1:1",
                       "--cache-dir", cache, "--pid-file", pid_file)
    assert rc == 0, err
    assert "its directory %s is missing; the daemon creates it" % pid_dir in out
    assert "configuration OK" in out
    assert not os.path.exists(pid_dir)
    # two levels missing: -t refuses, naming the setting
    deep = os.path.join(run_dir, "a", "b", "d.pid")
    rc, _out, err = run("-t", "--base", "http://127.0.0.1:1",
                        "--cache-dir", cache, "--pid-file", deep)
    assert rc == 1 and "PidFile (--pid-file) %s: No such file" % deep in err
    daemon = daemon_factory("http://127.0.0.1:1",
                            args=["--pid-file", pid_file])

    def pid_written():
        try:
            with open(pid_file) as f:
                return f.read().strip() == str(daemon.proc.pid)
        except OSError:
            return False
    assert wait_for(pid_written)
    assert os.stat(pid_dir).st_mode & 0o7777 == 0o755
