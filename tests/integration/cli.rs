//! The native CLI as a user runs it: a misspelled or unknown flag is refused before anything runs.

use std::process::Command;

fn websd(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_websd")).args(args).output().expect("run websd");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_misspelled_flag_is_refused_with_the_nearest_real_one() {
    // `--step 4` used to run 20 steps without a word.
    let (code, err) = websd(&["generate", "no-such-model", "--prompt", "a cat", "--step", "4"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown option --step for `websd generate` (did you mean --steps?)"), "{err}");

    let (code, err) = websd(&["bench", "--colour", "red"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown option --colour for `websd bench`") && !err.contains("did you mean"), "{err}");

    let (code, err) = websd(&["noise", "--seed"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--seed needs a value"), "{err}");

    let (code, err) = websd(&["roundtrip", "a", "b"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unexpected argument \"b\""), "{err}");

    // Known flags pass the check and reach the command (which then fails on the missing folder).
    let (code, err) = websd(&["generate", "no-such-model", "--prompt", "a cat", "--steps", "4", "--taesd"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no such model folder"), "{err}");

    let (code, out) = websd(&["noise", "--seed", "3", "--count", "2"]);
    assert_eq!(code, Some(0), "{out}");
}
