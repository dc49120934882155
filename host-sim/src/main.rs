//! host-sim: placeholder until the simulator lands (issue 5).
fn main() {
    eprintln!("host-sim: not implemented yet");
    std::process::exit(2);
}
