//! Running a list of tests in the sandbox harnesses with their own `main()` (`harness = false`),
//! with the `test NAME ... ok|FAILED` lines libtest prints (and `scripts/test.sh` counts).

use std::process::ExitCode;

/// One test: its name and its body.
pub type Test = (&'static str, fn() -> anyhow::Result<()>);

/// Runs every test in order (a failure does not stop the others), printing the lines and the
/// totals the spawn harness prints; the exit status fails when one did.
pub fn run(tests: &[Test]) -> ExitCode {
    let mut failed = Vec::new();
    for (name, test) in tests {
        match test() {
            Ok(()) => println!("test {name} ... ok"),
            Err(e) => {
                println!("test {name} ... FAILED\n    {e:#}");
                failed.push(*name);
            }
        }
    }
    println!("\n{} run, {} failed {failed:?}", tests.len(), failed.len());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
