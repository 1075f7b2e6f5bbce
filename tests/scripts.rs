//! The set-up scripts on machines unlike this one: a Python without venv, an externally managed
//! Python, a second run with everything already installed, a browser in another place. Each case
//! sources `scripts/common.sh` in bash with a PATH of stand-in commands (a fake `python3`,
//! `apt-get`, `sudo`, browser), so what the scripts would run on such a machine is seen without
//! changing this one. The real thing, a clean clone on the system's Python, is
//! `scripts/check-fresh-machine.sh` (docs/development.md).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn common_sh() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/common.sh")
}

/// A folder of stand-in commands; `PATH` is this folder and nothing else.
struct Machine {
    root: tempfile::TempDir,
}

impl Machine {
    /// A machine with only the basic tools the scripts use (rm, id, cat, touch, mkdir) and bash.
    fn new() -> Self {
        let root = tempfile::tempdir().expect("a temporary folder");
        let machine = Self { root };
        fs::create_dir(machine.bin()).expect("a bin folder");
        for tool in ["rm", "id", "cat", "touch", "mkdir", "chmod", "bash", "dirname"] {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|dir| Path::new(dir).join(tool))
                .find(|path| path.is_file())
                .unwrap_or_else(|| panic!("{tool} is on this machine"));
            std::os::unix::fs::symlink(real, machine.bin().join(tool)).expect("a link to a basic tool");
        }
        machine
    }

    fn bin(&self) -> PathBuf {
        self.root.path().join("bin")
    }

    fn venv(&self) -> PathBuf {
        self.root.path().join("venv")
    }

    /// Writes an executable bash script at `path`.
    fn script(&self, path: &Path, body: &str) {
        fs::create_dir_all(path.parent().expect("a parent")).expect("the script's folder");
        fs::write(path, format!("#!/bin/bash\n{body}\n")).expect("the script");
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("executable");
    }

    fn command(&self, name: &str, body: &str) {
        self.script(&self.bin().join(name), body);
    }

    /// A `python3` like Debian's without the python3-venv package: `-m venv` fails with Debian's
    /// message, `-m pip install` is refused as PEP 668 has it; until `venv_installed` exists.
    fn debian_python(&self) {
        let marker = self.root.path().join("venv_installed");
        let venv_python = r#"#!/bin/bash
exit 0"#;
        self.command(
            "python3",
            &format!(
                r#"if [ "$1 $2" = "-m venv" ]; then
  if [ -e "{marker}" ]; then
    mkdir -p "$3/bin" && printf '%s\n' '{venv_python}' >"$3/bin/python" && chmod +x "$3/bin/python"
    exit 0
  fi
  mkdir -p "$3"
  echo "The virtual environment was not created successfully because ensurepip is not" >&2
  echo "available.  On Debian/Ubuntu systems, you need to install the python3-venv" >&2
  exit 1
fi
if [ "$1 $2" = "-m pip" ]; then echo "error: externally-managed-environment" >&2; exit 1; fi
exit 0"#,
                marker = marker.display()
            ),
        );
    }

    /// Runs `snippet` in bash after sourcing common.sh; (success, stdout, stderr).
    fn run(&self, snippet: &str) -> (bool, String, String) {
        let output = Command::new(self.bin().join("bash"))
            .arg("-c")
            .arg(format!("set -euo pipefail; source '{}'; {snippet}", common_sh().display()))
            .env_clear()
            .env("PATH", self.bin())
            .env("HOME", self.root.path())
            .env("LEADSPACE_VENV", self.venv())
            .output()
            .expect("bash runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|line| line.starts_with("error:")).collect()
}

#[test]
fn a_python_without_venv_and_no_apt_stops_with_one_line_saying_what_to_install() {
    let machine = Machine::new();
    machine.debian_python();

    let (ok, _, stderr) = machine.run("pip_install cfn-lint");

    assert!(!ok, "pip_install cannot succeed without a venv");
    assert_eq!(error_lines(&stderr).len(), 1, "one line: {stderr}");
    assert!(stderr.contains("venv module"), "{stderr}");
    assert!(!stderr.contains("externally-managed"), "pip was never run against the system's Python: {stderr}");
    assert!(!machine.venv().exists(), "no half-made environment is left behind");
}

#[test]
fn a_debian_python_without_venv_names_the_python3_venv_package_when_it_cannot_install_it() {
    let machine = Machine::new();
    machine.debian_python();
    machine.command("apt-get", "echo apt-get must not run without root >&2; exit 1");
    machine.command("id", r#"[ "$1" = "-u" ] && echo 1000"#);
    machine.command("sudo", "echo 'sudo: a password is required' >&2; exit 1");

    let (ok, _, stderr) = machine.run("pip_install cfn-lint");

    assert!(!ok);
    assert_eq!(
        error_lines(&stderr),
        ["error: python3 -m venv cannot make ".to_string()
            + &format!(
                "{}: install the python3-venv package (sudo apt-get install python3-venv), then run this again",
                machine.venv().display()
            )]
    );
    assert!(!stderr.contains("apt-get must not run"), "{stderr}");
}

#[test]
fn as_root_with_apt_the_python3_venv_package_is_installed_and_the_environment_made() {
    let machine = Machine::new();
    machine.debian_python();
    let calls = machine.root.path().join("apt-calls");
    let marker = machine.root.path().join("venv_installed");
    machine.command(
        "apt-get",
        &format!(
            r#"echo "$*" >>"{calls}"; if [ "$1" = install ]; then touch "{marker}"; fi"#,
            calls = calls.display(),
            marker = marker.display()
        ),
    );
    machine.command("id", r#"[ "$1" = "-u" ] && echo 0"#);

    let (ok, _, stderr) = machine.run("ensure_venv; command -v python");

    assert!(ok, "{stderr}");
    let apt = fs::read_to_string(&calls).expect("apt-get was run");
    assert!(apt.lines().any(|line| line.starts_with("install") && line.ends_with("python3-venv")), "{apt}");
    assert!(machine.venv().join("bin/python").is_file(), "the environment is made");
}

#[test]
fn a_second_run_uses_the_environment_the_first_made_and_installs_nothing() {
    let machine = Machine::new();
    machine.debian_python();
    // What a first run left: the environment with the tools in it (stand-ins that answer).
    let venv_bin = machine.venv().join("bin");
    machine.script(&venv_bin.join("python"), "cat >/dev/null; exit 0");
    for tool in ["moto_server", "aws", "cfn-lint", "cargo-lambda"] {
        machine.script(&venv_bin.join(tool), "exit 0");
    }
    machine.command("cargo", r#"[ "$1" = lambda ] && exec cargo-lambda "${@:2}""#);

    let (ok, _, stderr) =
        machine.run("ensure_moto; ensure_aws_cli; ensure_cfn_lint; ensure_cargo_lambda; command -v moto_server");

    assert!(ok, "{stderr}");
    assert!(!stderr.contains("installing"), "nothing is installed again: {stderr}");
    assert!(!stderr.contains("creating"), "the environment is not made again: {stderr}");
}

#[test]
fn a_tool_already_on_path_at_a_good_version_is_used_as_it_is() {
    let machine = Machine::new();
    // A python3 whose moto is recent enough, and its moto_server, outside any environment.
    machine.command("python3", "cat >/dev/null; exit 0");
    machine.command("moto_server", "exit 0");

    let (ok, stdout, stderr) = machine.run("ensure_moto; command -v moto_server");

    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), machine.bin().join("moto_server").display().to_string());
    assert!(!machine.venv().exists(), "no environment was needed: {stderr}");
}

#[test]
fn a_moto_too_old_outside_the_environment_is_replaced_by_one_installed_inside_it() {
    let machine = Machine::new();
    // The python3 on PATH has moto 5.2.1: its version check fails; pip in the venv is recorded.
    machine.command("python3", &format!(
        r#"if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; printf '#!/bin/bash\necho "$*" >>"{log}"\n' >"$3/bin/python"; chmod +x "$3/bin/python"; exit 0; fi
cat >/dev/null; exit 1"#,
        log = machine.root.path().join("pip-calls").display()
    ));
    machine.command("moto_server", "exit 0");

    let (ok, _, stderr) = machine.run("ensure_moto");

    assert!(ok, "{stderr}");
    let pip = fs::read_to_string(machine.root.path().join("pip-calls")).expect("the environment's pip ran");
    assert!(pip.contains("-m pip install") && pip.contains("moto[server]>=5.2.5"), "{pip}");
}

#[test]
fn a_browser_is_found_under_its_other_names_and_exported_for_the_tests() {
    let machine = Machine::new();
    machine.command("google-chrome", "exit 0");

    let (ok, stdout, stderr) = machine.run("ensure_chromium; echo \"$CHROMIUM\"");

    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), machine.bin().join("google-chrome").display().to_string());
}

#[test]
fn no_browser_and_no_apt_stops_with_one_line_naming_what_to_install() {
    let machine = Machine::new();

    let (ok, _, stderr) = machine.run("ensure_chromium");

    assert!(!ok, "the browser test is never skipped silently");
    let errors = error_lines(&stderr);
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("Chromium or Google Chrome"), "{stderr}");
}

#[test]
fn with_apt_as_root_debians_chromium_is_installed() {
    let machine = Machine::new();
    machine.command("id", r#"[ "$1" = "-u" ] && echo 0"#);
    let chromium = machine.bin().join("chromium");
    machine.command(
        "apt-get",
        &format!(
            r#"if [ "$1" = install ] && [ "${{@: -1}}" = chromium ]; then printf '#!/bin/bash\n' >"{path}"; chmod +x "{path}"; fi"#,
            path = chromium.display()
        ),
    );

    let (ok, stdout, stderr) = machine.run("ensure_chromium; echo \"$CHROMIUM\"");

    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), chromium.display().to_string());
}
