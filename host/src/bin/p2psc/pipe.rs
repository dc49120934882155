//! `p2psc pipe`: stdin to the peer, the peer to stdout, like netcat.

use crate::args::ConnectArgs;
use crate::copy::{copy, PEER, STDIN, STDOUT};
use crate::dial::dial;
use crate::fail::Failure;
use crate::keys::load_keypair;
use crate::progress::{Progress, Record};

/// Connect, then copy both ways; at stdin's end the peer gets a FIN (half-close), and the tool ends
/// once the peer has closed its direction too.
pub async fn run(args: &ConnectArgs, progress: &Progress) -> Result<(), Failure> {
    let keypair = load_keypair(&args.key)?;
    let conn = dial(&keypair, args, progress).await?;
    drop(keypair);
    let (mut from_peer, mut to_peer) = tokio::io::split(conn);
    let up = async { copy(&mut tokio::io::stdin(), STDIN, &mut to_peer, PEER).await };
    let down = async { copy(&mut from_peer, PEER, &mut tokio::io::stdout(), STDOUT).await };
    let (sent, received) = tokio::try_join!(up, down)?;
    progress.report(Record::Done { sent, received });
    Ok(())
}
