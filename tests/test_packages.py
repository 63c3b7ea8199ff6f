"""The Debian packages (make deb), installed on this machine and removed.

Builds libapache2-mod-offload and offload-daemon once, installs them with
apt-get as the README says, checks what an operator would (a2enmod and
a2dismod with the module's Debian name, apache2ctl -t, offload_daemon -t
on the shipped config, the unit, the man page, an upgrade that keeps a
changed conffile), purges them and compares the machine's file list with
the one taken before. Whatever the test changed is undone at the end,
also when it fails: the packages purged, the system user removed if the
test made it. The system's apache2 service is never started or
restarted: the packages' scripts run under a policy-rc.d that denies it.

Needs root (it installs packages) and Debian's packaging tools (make deps).
"""

import grp
import os
import pwd
import re
import shutil
import subprocess

import pytest

import harness

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="installs Debian packages on this machine: run as root")

PACKAGES = ("libapache2-mod-offload", "offload-daemon")
MODULE = "offloader"                 # the module's Debian name
CONF = "/etc/offload/offload_daemon.conf"
UNIT = "/lib/systemd/system/offload_daemon.service"
POLICY_RC_D = "/usr/sbin/policy-rc.d"
DAEMON_DIRS = ("/var/cache/offload", "/var/log/offload_daemon")

# Compared before installing and after purging. Not walked: directories
# that other programs on this machine change meanwhile (temporary files,
# apt's downloads and lists, dpkg's journal), and the build directory.
SNAPSHOT_ROOTS = ("/etc", "/usr", "/var", "/run", "/opt", "/srv")
SNAPSHOT_SKIP = ("/var/tmp", "/var/cache/apt", "/var/lib/apt/lists",
                 "/var/lib/dpkg/updates", "/run/user", "/run/lock")
# Apache's own state directories: a2enmod and a2dismod make them on first
# use and keep them, empty, for every module (what they hold of ours is
# removed on purge and checked).
APACHE_STATE = "/var/lib/apache2/module"

# Not inherited from make test: its variables (SANITIZE=1) and sanitizer
# options are not for the packages' build.
ENV = {k: v for k, v in os.environ.items()
       if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ASAN_OPTIONS",
                    "UBSAN_OPTIONS")}
ENV.update(DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
# apt-get waits for another apt or dpkg to finish instead of failing
APT = ("apt-get", "-y", "-o", "DPkg::Lock::Timeout=120")


def run(*cmd, check=True, **kw):
    """Run cmd; return the CompletedProcess, stdout and stderr as text.
    With check, fail the test with the output unless it exits 0."""
    kw.setdefault("env", ENV)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, **kw)
    if check:
        assert p.returncode == 0, "%s exited %d:\n%s\n%s" % (
            " ".join(cmd), p.returncode, p.stdout[-4000:], p.stderr[-4000:])
    return p


def snapshot():
    """Every path under SNAPSHOT_ROOTS (not following symbolic links)."""
    paths = set()
    for root in SNAPSHOT_ROOTS:
        for d, dirs, files in os.walk(root):
            if d.startswith(SNAPSHOT_SKIP) or d.startswith(harness.REPO) or \
                    d.startswith(harness.RUN_ROOT):
                dirs[:] = []
                continue
            paths.update(os.path.join(d, n) for n in dirs + files)
    return paths


def installed_version(pkg):
    """The installed version of pkg, or None."""
    p = run("dpkg-query", "-W", "-f", "${Status} ${Version}", pkg,
            check=False)
    m = re.match(r"install ok installed (\S+)$", p.stdout)
    return m.group(1) if m else None


def name_exists(db, name):
    """True when the user (db pwd) or group (db grp) name exists."""
    try:
        db.getpwnam(name) if db is pwd else db.getgrnam(name)
        return True
    except KeyError:
        return False


def daemon_pids():
    """PIDs of processes running the packaged /usr/sbin/offload_daemon."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            exe = os.readlink("/proc/%s/exe" % pid)
        except OSError:
            continue
        if exe.startswith("/usr/sbin/offload_daemon"):
            pids.append(int(pid))
    return pids


def rebuild(tree, dest, version):
    """Build the packages again from tree (a make deb build tree) as
    version, with a changelog entry for it, in dest/; return their paths."""
    copy = os.path.join(dest, os.path.basename(tree))
    shutil.copytree(tree, copy, symlinks=True)
    changelog = os.path.join(copy, "debian", "changelog")
    with open(changelog) as f:
        old = f.read()
    entry = ("mod-offload (%s) unstable; urgency=medium\n\n"
             "  * Rebuilt.\n\n"
             " -- mod_offload maintainers "
             "<maintainers@users.noreply.h-seed-9f884eb2.example>  %s\n\n"
             % (version, run("date", "-R").stdout.strip()))
    with open(changelog, "w") as f:
        f.write(entry + old)
    run("dpkg-buildpackage", "-b", "-us", "-uc", cwd=copy,
        env=dict(ENV, DEB_BUILD_OPTIONS="nocheck"))
    return sorted(os.path.join(dest, n) for n in os.listdir(dest)
                  if n.endswith(".deb") and "-dbgsym_" not in n)


@pytest.fixture(scope="module")
def debs():
    """make deb, once: {"version", "debs", "rebuilt", "lintian"}."""
    for tool in ("dpkg-buildpackage", "dh", "dh_apache2", "lintian",
                 "apt-get", "a2enmod", "apache2ctl", "man"):
        if shutil.which(tool) is None:
            pytest.skip("%s is missing: run make deps" % tool)
    d = harness.make_run_dir(os.path.join("tests", "packages"))
    out = os.path.join(d, "v1")
    p = run("make", "-C", harness.REPO, "deb", "DEB_BUILD=" + d + "/build",
            "DEB_OUT=" + out)
    version = run("dpkg-deb", "-f", os.path.join(out, os.listdir(out)[0]),
                  "Version").stdout.strip()
    tree = os.path.join(d, "build", "mod-offload-" + version)
    os.makedirs(os.path.join(d, "v2"))
    rebuilt = rebuild(tree, os.path.join(d, "v2"), version + "+b1")
    return {"version": version, "lintian": p.stdout,
            "debs": sorted(os.path.join(out, n) for n in os.listdir(out)),
            "rebuilt": rebuilt}


@pytest.fixture(scope="module")
def machine(debs):
    """The machine before the packages: {"paths", ...}. Afterwards, also
    on failure: the packages purged, the user and group "offload" and the
    policy-rc.d removed if the test made them."""
    for pkg in PACKAGES:
        if run("dpkg-query", "-W", pkg, check=False).returncode == 0:
            pytest.skip("%s is already known to dpkg here: the test would "
                        "remove it" % pkg)
    # The daemon run as root elsewhere (its tests, by hand) may have made
    # its default CacheDir, empty: purge removes it, the end puts it back.
    left = {}
    for d in DAEMON_DIRS + ("/run/offload_daemon", "/etc/offload"):
        if os.path.isdir(d) and os.listdir(d):
            pytest.skip("%s exists and is not empty: the purge would "
                        "remove it" % d)
        if os.path.isdir(d):
            left[d] = os.stat(d)
    made_policy = False
    if not os.path.exists(POLICY_RC_D):
        with open(POLICY_RC_D, "w") as f:
            f.write("#!/bin/sh\n# no service starts while packages are "
                    "tested\nexit 101\n")
        os.chmod(POLICY_RC_D, 0o755)
        made_policy = True
    elif run(POLICY_RC_D, "apache2", "restart", check=False).returncode \
            != 101:
        pytest.skip("%s allows services to start: the packages' scripts "
                    "would restart the system's apache2" % POLICY_RC_D)
    state = {"paths": snapshot() - set(left),
             "user": name_exists(pwd, "offload"),
             "group": name_exists(grp, "offload"),
             "apache_state": set(os.listdir(APACHE_STATE))}
    try:
        yield state
    finally:
        installed = [p for p in PACKAGES
                     if run("dpkg-query", "-W", p, check=False)
                     .returncode == 0]
        if installed:
            run("dpkg", "--purge", *installed, check=False)
        for pid in daemon_pids():
            os.kill(pid, 15)
        if not state["user"] and name_exists(pwd, "offload"):
            run("userdel", "offload", check=False)
        if not state["group"] and name_exists(grp, "offload"):
            run("groupdel", "offload", check=False)
        for name in set(os.listdir(APACHE_STATE)) - state["apache_state"]:
            d = os.path.join(APACHE_STATE, name)
            if not os.listdir(d):
                os.rmdir(d)
        for d, st in left.items():
            if not os.path.exists(d):
                os.mkdir(d, st.st_mode & 0o7777)
                os.chown(d, st.st_uid, st.st_gid)
        if made_policy:
            os.unlink(POLICY_RC_D)


def test_lintian_finds_no_error_and_every_warning_is_explained(debs):
    tags = re.findall(r"^([EW]): \S+: (\S+)", debs["lintian"], re.M)
    assert [t for t in tags if t[0] == "E"] == []
    with open(os.path.join(harness.REPO, "docs", "operations.md")) as f:
        doc = f.read()
    unexplained = {t for s, t in tags if s == "W" and t not in doc}
    assert unexplained == set(), "lintian warnings not in operations.md"
    arch = run("dpkg", "--print-architecture").stdout.strip()
    assert [os.path.basename(p) for p in debs["debs"]] == [
        "%s_%s_%s.deb" % (pkg, debs["version"], arch) for pkg in PACKAGES]


def test_install_enables_but_does_not_start_without_base_url(debs, machine):
    p = run(*APT, "install", *debs["debs"])
    for pkg in PACKAGES:
        assert installed_version(pkg) == debs["version"]
    assert "offload_daemon is not started: set BaseURL" in p.stdout
    assert daemon_pids() == []
    u = pwd.getpwnam("offload")
    assert grp.getgrgid(u.pw_gid).gr_name == "offload"
    for d in DAEMON_DIRS:
        assert os.stat(d).st_uid == u.pw_uid, d
    # enabled for both init systems
    assert os.readlink(
        "/etc/systemd/system/multi-user.target.wants/offload_daemon.service"
    ) == UNIT
    assert [n for n in os.listdir("/etc/rc2.d")
            if re.match(r"S\d\doffload_daemon$", n)]
    # the module is enabled as any Debian module is at installation
    assert os.path.islink("/etc/apache2/mods-enabled/%s.load" % MODULE)


def loaded_modules():
    """The modules of the system's Apache config (apache2ctl -M)."""
    return re.findall(r"^ (\w+) \(", run("apache2ctl", "-M").stdout, re.M)


def test_a2dismod_a2enmod_then_apache2ctl_passes(machine):
    load = "/etc/apache2/mods-enabled/%s.load" % MODULE
    run("a2dismod", MODULE)
    assert not os.path.lexists(load)
    assert "offload_module" not in loaded_modules()
    run("a2enmod", MODULE)
    assert os.path.islink(load)
    assert "Syntax OK" in run("apache2ctl", "-t").stderr
    assert "offload_module" in loaded_modules()


def test_daemon_config_check_names_the_missing_base_url(machine):
    p = run("offload_daemon", "-t", "-f", CONF, check=False)
    assert p.returncode == 1
    lines = (p.stdout + p.stderr).strip().splitlines()
    assert len(lines) == 1 and "BaseURL" in lines[0], lines
    with open(CONF) as f:
        text = f.read()
    assert re.search(r"^#BaseURL ", text, re.M)
    with open(CONF, "w") as f:
        f.write(re.sub(r"^#BaseURL .*$", "BaseURL http://www.example.org",
                       text, count=1, flags=re.M))
    p = run("offload_daemon", "-t", "-f", CONF)
    assert p.stdout.strip() == CONF + ": configuration OK"


def test_unit_verifies(machine):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("no systemd-analyze on this machine")
    # Run outside systemd it leaves these behind (the last one from man,
    # which it runs for Documentation=): removed unless they were there.
    byproducts = [p for p in ("/run/mount", "/run/systemd/systemd-units-load",
                              "/var/cache/man/cat8/offload_daemon.8.gz")
                  if not os.path.lexists(p)]
    try:
        p = run("systemd-analyze", "verify", UNIT)
        assert "offload_daemon" not in p.stdout + p.stderr
    finally:
        for path in byproducts:
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)      # only if empty: mount may use it
                elif os.path.lexists(path):
                    os.unlink(path)
            except OSError:
                pass


def test_man_page_is_found(machine):
    p = run("man", "-w", "offload_daemon")
    assert p.stdout.strip() == "/usr/share/man/man8/offload_daemon.8.gz"


def test_upgrade_keeps_a_changed_conffile(debs, machine):
    with open(CONF, "a") as f:
        f.write("# kept across upgrades\nMaxClients 100\n")
    with open(CONF) as f:
        changed = f.read()
    run(*APT, "install", *debs["rebuilt"])
    for pkg in PACKAGES:
        assert installed_version(pkg) == debs["version"] + "+b1"
    with open(CONF) as f:
        assert f.read() == changed
    assert not os.path.exists(CONF + ".dpkg-dist")
    assert daemon_pids() == []      # policy-rc.d denied the restart
    run("offload_daemon", "-t", "-f", CONF)


def test_purge_leaves_nothing_behind(machine):
    run(*APT, "purge", *PACKAGES)
    for pkg in PACKAGES:
        assert run("dpkg-query", "-W", pkg, check=False).returncode != 0
    now = snapshot()
    # In /var and /run, other programs on this machine make files of their
    # own meanwhile: there only paths named after ours count.
    new = {p for p in now - machine["paths"]
           if "offload" in p or p.startswith(("/etc/", "/usr/"))}
    # (Apache's state directories, which a2enmod and a2dismod may have
    # made, stay, empty: the module's state in them is gone)
    assert sorted(new) == []
    # nothing of the system's removed (/run and /var change meanwhile)
    assert sorted(p for p in machine["paths"] - now
                  if p.startswith(("/etc/", "/usr/"))) == []
    # the user stays, as Debian's packages keep theirs
    assert name_exists(pwd, "offload")
