//! Prints a fuzz input in readable form and runs it through its check:
//! `cargo run -p clawnode-fuzz-check --example describe -- <target> <file>...`

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: describe <target> <file>...");
    let check = clawnode_fuzz_check::check_for(&target).expect("a known target");
    for path in args {
        let data = std::fs::read(&path).expect("a readable file");
        println!("{path}:\n{}", clawnode_fuzz_check::describe(&target, &data));
        check(&data);
        println!("{path}: check passed");
    }
}
