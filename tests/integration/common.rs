use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn conveyor() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_conveyor"));
    command.env_remove("CONVEYOR_WORKFLOWS").env_remove("CONVEYOR_STATE").env("NO_COLOR", "1");
    command
}

pub fn run(args: &[&str], cwd: &Path) -> Output {
    conveyor().args(args).current_dir(cwd).output().expect("the conveyor binary runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn bundled_workflows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows")
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}
