use crate::common::*;

#[test]
fn python_hello() {
    let r = run_with(
        "python",
        "import sys\nprint('Hello 🌎!', input(), sys.argv[1:])",
        |r| {
            r.stdin = Some("in".into());
            r.args = Some(vec!["a".into()]);
        },
    );
    assert_eq!(r.status, "ok", "{r:?}");
    assert_eq!(r.stdout, "Hello 🌎! in ['a']\n");
}
