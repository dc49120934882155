//! `p2psc-mediator`: placeholder until the server lands (issue 4).
fn main() {
    eprintln!("p2psc-mediator: not implemented yet");
    std::process::exit(2);
}
