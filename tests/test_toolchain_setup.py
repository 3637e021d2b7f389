"""`make install`'s Ruby step (advfusion_cli.sandbox.toolchain_setup): as root with apt a
missing toolchain is installed quietly; anywhere else one line names the exact command; a
toolchain already there costs nothing. The machine is faked: no package is installed here."""

from __future__ import annotations

import pytest

from advfusion_cli.sandbox import toolchain_setup


class FakeMachine:
    """PATH lookups, root-ness and apt-get for toolchain_setup; `installs` says whether apt-get
    install really puts the tool on PATH."""

    def __init__(self, monkeypatch, *, root: bool, managers=("apt-get",), installs=True):
        self.on_path = set(managers)
        self.commands: list[list[str]] = []
        self.installs = installs
        monkeypatch.setattr(toolchain_setup, "_is_root", lambda: root)
        monkeypatch.setattr(toolchain_setup, "_which", self.which)
        monkeypatch.setattr(toolchain_setup, "find_toolchain", CachedLookup(self))
        monkeypatch.setattr(toolchain_setup.subprocess, "run", self.run)

    def which(self, program):
        return f"/usr/bin/{program}" if program in self.on_path else None

    def run(self, argv, check, **kwargs):
        assert kwargs["stdout"] is kwargs["stderr"] is toolchain_setup.subprocess.DEVNULL
        assert kwargs["env"]["DEBIAN_FRONTEND"] == "noninteractive"
        self.commands.append(argv)
        if argv[:2] == ["apt-get", "install"] and self.installs:
            self.on_path.add(argv[-1])
        return type("Done", (), {"returncode": 0})()


class CachedLookup:
    """find_toolchain as the real one behaves: cached until cache_clear()."""

    def __init__(self, machine):
        self.machine, self.answers = machine, {}

    def __call__(self, language):
        if language not in self.answers:
            found = language in self.machine.on_path
            self.answers[language] = {language: f"/usr/bin/{language}"} if found else None
        return self.answers[language]

    def cache_clear(self):
        self.answers.clear()


def test_root_with_apt_installs_ruby_quietly(monkeypatch):
    machine = FakeMachine(monkeypatch, root=True)
    lines = toolchain_setup.ensure_toolchain("ruby")
    assert machine.commands == [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "ruby"],
    ]
    assert lines == ["installing ruby (pass@1 runs the generated ruby programs)"]


def test_a_failed_install_ends_in_one_line_with_the_command(monkeypatch):
    machine = FakeMachine(monkeypatch, root=True, installs=False)
    lines = toolchain_setup.ensure_toolchain("ruby")
    assert len(machine.commands) == 2
    assert lines[-1] == (
        "note: pass@1 needs Ruby, which is not installed; install it with: apt-get install -y ruby"
    )


@pytest.mark.parametrize(
    ("managers", "command"),
    [
        (("apt-get",), "sudo apt-get install -y ruby"),
        (("dnf",), "sudo dnf install -y ruby"),
        (("brew",), "brew install ruby"),
        ((), "install ruby so that ruby is on PATH"),
    ],
)
def test_without_root_nothing_runs_and_one_line_names_the_command(monkeypatch, managers, command):
    machine = FakeMachine(monkeypatch, root=False, managers=managers)
    assert toolchain_setup.ensure_toolchain("ruby") == [
        f"note: pass@1 needs Ruby, which is not installed; install it with: {command}"
    ]
    assert machine.commands == []


def test_a_toolchain_already_there_is_left_alone(monkeypatch, capsys):
    machine = FakeMachine(monkeypatch, root=True, managers=("apt-get", "ruby"))
    assert toolchain_setup.main(["ruby"]) == 0
    assert capsys.readouterr().out == "" and machine.commands == []


def test_every_sandbox_language_has_a_package_per_manager():
    from advfusion_cli.sandbox.toolchains import LANGUAGE_TABLE

    for manager, packages in toolchain_setup.PACKAGES.items():
        assert set(packages) == set(LANGUAGE_TABLE), manager
    assert toolchain_setup.install_command("cobol") == "install a cobol toolchain"
