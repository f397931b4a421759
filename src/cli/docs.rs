//! Shell completions and man pages, generated from the same definitions as `--help`.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use super::Cli;

/// `conveyor completions SHELL [--static]`: the script on stdout, to source or to drop where the shell looks.
/// The dynamic one calls the binary as the operator types (see `complete`); the static one lists commands
/// and options only.
pub fn completions(shell: clap_complete::Shell, fixed: bool) -> ExitCode {
    if fixed {
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "conveyor", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    match super::complete::registration(shell, &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => super::fail(format!("cannot write the completion script: {error}")),
    }
}

/// `conveyor man [DIR]`: `conveyor.1` and a page per subcommand (`conveyor-run.1`, …) into DIR.
pub fn man(dir: &Path) -> ExitCode {
    match write_pages(dir) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("conveyor: cannot write the man pages into {}: {error}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn write_pages(dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let command = Cli::command();
    let mut written = Vec::new();
    let mut page = |name: String, command: clap::Command| -> std::io::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut text = Vec::new();
        clap_mangen::Man::new(command).title(name.clone()).render(&mut text)?;
        std::fs::write(&path, text)?;
        written.push(path);
        Ok(())
    };
    for sub in command.get_subcommands() {
        // A subcommand's page is titled as it is typed: `conveyor-run`.
        let name = format!("conveyor-{}", sub.get_name());
        page(name.clone(), sub.clone().name(name))?;
    }
    page("conveyor".to_string(), command)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_gets_a_man_page_with_its_name_and_options() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_pages(dir.path()).unwrap();
        assert!(written.len() > 15, "{written:?}");
        let main = std::fs::read_to_string(dir.path().join("conveyor.1")).unwrap();
        assert!(main.starts_with(".ie") || main.contains(".TH conveyor"), "{main}");
        let run = std::fs::read_to_string(dir.path().join("conveyor-run.1")).unwrap();
        assert!(run.contains(".TH conveyor-run") && run.contains("\\-\\-param"), "{run}");
    }
}
