//! `p2psc pipe`: stdin to the peer, the peer to stdout, like netcat.

use crate::args::ConnectArgs;
use crate::dial::dial;
use crate::fail::Failure;
use crate::keys::load_keypair;
use crate::progress::{Progress, Record};
use crate::stdio::{stdin_to, to_stdout};

/// Connect, then copy both ways; at stdin's end the peer gets a FIN (half-close), and the tool ends
/// once the peer has closed its direction too.
pub async fn run(args: &ConnectArgs, progress: &Progress) -> Result<(), Failure> {
    let keypair = load_keypair(&args.key)?;
    let conn = dial(&keypair, args, progress).await?;
    drop(keypair);
    let (mut from_peer, mut to_peer) = tokio::io::split(conn);
    let (sent, received) = tokio::try_join!(stdin_to(&mut to_peer), to_stdout(&mut from_peer))?;
    progress.report(Record::Done { sent, received });
    Ok(())
}
