//! Compile-time behaviour of `#[energy_bench]`: every accepted form compiles (and runs), and
//! every diagnostic points at the offending token.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
