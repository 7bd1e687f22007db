//! Without `CANDLE_GRAD_DO_NOT_DETACH` candle's second derivatives are silently wrong, and
//! `autodiff::ensure_second_order` says so (it sets nothing: the binaries' start-up and
//! `.cargo/config.toml` set the flag). This test binary runs itself again with the variable
//! removed from the child's environment.

use terrain_model::{Error, autodiff};

/// Run by [`wrong_without_the_flag_and_the_check_says_so`] in a child process without the flag.
#[test]
#[ignore = "run in a child process without the flag"]
fn child_without_the_flag() {
    assert!(!autodiff::flag_set());
    assert_ne!(autodiff::second_derivative_probe().unwrap(), 48.0);
    let e = autodiff::ensure_second_order().unwrap_err();
    assert!(matches!(e, Error::SecondOrderDisabled { .. }), "{e}");
    assert!(e.to_string().contains(autodiff::FLAG), "{e}");
}

#[test]
fn wrong_without_the_flag_and_the_check_says_so() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_without_the_flag", "--ignored"])
        .env_remove(autodiff::FLAG)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "{text}");
}

#[test]
fn right_with_the_flag() {
    assert!(
        autodiff::flag_set(),
        "cargo test sets the flag (.cargo/config.toml)"
    );
    autodiff::ensure_second_order().unwrap();
    assert_eq!(autodiff::second_derivative_probe().unwrap(), 48.0);
}
